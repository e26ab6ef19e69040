"""Each profile against the reference: same seeds, same mode, different hardware.

Drift of a profile is put on the scale of seed noise: for paired runs (same
seeds) with metric difference d, ``drift_sd = sqrt(mean(d^2) / 2)`` is the SD
that the profile change adds to one run (two runs differing in a seed have
``E[d^2] = 2 * seed_sd^2``), so ``drift_to_seed_noise = drift_sd / seed_sd`` is
1 when changing the hardware moves the metric as much as changing a seed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from driftlab.drift import stats
from driftlab.drift.groupstats import Measured
from driftlab.drift.memo import remembered
from driftlab.drift.pairs import compare
from driftlab.drift.runs import Run

VERSION_KEYS = ("tensorflow", "keras", "numpy", "cuda", "cudnn", "driver", "gpu", "cpu_model", "tf32")


def versions(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """What a history compares across reports: library, driver and device versions."""
    fp = fingerprint or {}
    gpus = fp.get("gpus") or []
    first = gpus[0] if gpus and isinstance(gpus[0], dict) else {}
    out = {k: fp.get(k) for k in ("tensorflow", "keras", "numpy", "cuda", "cudnn", "cpu_model", "tf32")}
    out["driver"] = first.get("driver")
    out["gpu"] = first.get("product")
    out["env"] = fp.get("env") or {}
    return out


def _points(runs: Sequence[Run], mode: bool) -> dict[tuple, dict[str, Run]]:
    points: dict[tuple, dict[str, Run]] = defaultdict(dict)
    for r in runs:
        if r.deterministic == mode and r.repeat == 0:
            points[r.seeds][r.profile] = r
    return points


@remembered
def profile_pairs(runs: Sequence[Run], *, reference: str, mode: bool) -> dict[str, list[list[Run]]]:
    """Per profile besides the reference, its runs paired with the reference's at the same seeds [ref, profile]."""
    points = _points(runs, mode)
    return {prof: [[d[reference], d[prof]] for d in points.values() if reference in d and prof in d]
            for prof in sorted({r.profile for r in runs} - {reference})}


def profile_stats(runs: Sequence[Run], *, reference: str, mode: bool, metric: str, metric_names: Sequence[str],
                  task: str, seed: dict[str, Any], measured: Measured | None = None) -> dict[str, Any]:
    """``{profile: stats}`` for every profile besides the reference."""
    out: dict[str, Any] = {}
    for prof, pairs in profile_pairs(runs, reference=reference, mode=mode).items():
        if not pairs:
            out[prof] = {"compared": 0, "note": f"no runs with the same seeds on the reference '{reference}'"}
            continue
        deltas = {m: np.array([b.metrics[m] - a.metrics[m] for a, b in pairs if m in a.metrics and m in b.metrics])
                  for m in metric_names}
        d = deltas.get(metric, np.zeros(0))
        drift_sd = float(np.sqrt(np.mean(d ** 2) / 2)) if d.size else None
        floor = stats.noise_floor(float(np.mean([a.metrics[metric] for a, _ in pairs])), pairs[0][0].n_eval) \
            if metric == "accuracy" else None
        entry: dict[str, Any] = {
            "compared": len(pairs),
            "metric_delta_mean": float(np.mean(d)) if d.size else None,
            "metric_delta_max_abs": float(np.max(np.abs(d))) if d.size else None,
            "metric_deltas": {m: {"mean": float(np.mean(v)), "max_abs": float(np.max(np.abs(v)))}
                              for m, v in deltas.items() if v.size},
            "drift_sd": drift_sd,
            "drift_to_seed_noise": stats.ratio(drift_sd, seed.get("sd")),
            "noise_floor": floor,
            "drift_to_noise_floor": stats.ratio(drift_sd, floor),
        }
        entry.update({k: v for k, v in compare(pairs, task, measured).items() if k != "pairs"})
        entry["disagreement_to_seed"] = stats.ratio(entry.get("disagreement"), seed.get("disagreement"))
        entry["versions"] = versions(pairs[0][1].fingerprint)
        out[prof] = entry
    return out


@remembered
def matrix_groups(runs: Sequence[Run], *, mode: bool, profiles: Sequence[str]) -> dict[tuple[str, str], list[list[Run]]]:
    """The groups of each cell of the disagreement matrix (see ``disagreement_matrix``)."""
    points = _points(runs, mode)
    out: dict[tuple[str, str], list[list[Run]]] = {}
    for a in profiles:
        for b in profiles:
            if a == b:
                reps: dict[tuple, list[Run]] = defaultdict(list)
                for r in runs:
                    if r.profile == a and r.deterministic == mode:
                        reps[r.seeds].append(r)
                out[(a, b)] = [g for g in reps.values() if len(g) >= 2]
            else:
                out[(a, b)] = [[d[a], d[b]] for d in points.values() if a in d and b in d]
    return out


def disagreement_matrix(runs: Sequence[Run], *, mode: bool, task: str, profiles: Sequence[str],
                        measured: Measured | None = None) -> dict[str, Any]:
    """Mean prediction disagreement (regression: RMS difference) between every two profiles.

    Off the diagonal: runs with the same seeds on the two profiles. On the
    diagonal: repeats on that profile in the comparison mode (None without repeats).
    """
    cells = matrix_groups(runs, mode=mode, profiles=profiles)
    matrix = [[compare(cells[(a, b)], task, measured).get("disagreement") for b in profiles] for a in profiles]
    return {"profiles": list(profiles), "values": matrix,
            "measure": "disagreement" if task == "classification" else "rms_diff"}
