"""Op determinism on versus off: what it removes, and what it costs in fit time."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from driftlab.drift import stats
from driftlab.drift.groupstats import Measured
from driftlab.drift.memo import remembered
from driftlab.drift.pairs import compare
from driftlab.drift.runs import Run


def repeat_groups(runs: Sequence[Run], deterministic: bool) -> list[list[Run]]:
    """Repeats of one point (profile, seeds) with determinism on or off; groups of two or more."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        if r.deterministic == deterministic:
            groups[(r.profile, r.seeds)].append(r)
    return [g for g in groups.values() if len(g) >= 2]


def _repeats(runs: Sequence[Run], deterministic: bool, metric: str, task: str,
             measured: Measured | None = None) -> dict[str, Any]:
    groups = repeat_groups(runs, deterministic)
    if not groups:
        return {"varied": False, "note": f"no repeats with determinism {'on' if deterministic else 'off'}"}
    var, df = stats.pooled_variance([[r.metrics[metric] for r in g if metric in r.metrics] for g in groups])
    out = {"varied": True, "groups": len(groups), "metric_sd": None if var is None else float(np.sqrt(var))}
    out.update(compare(groups, task, measured))
    return out


def verdict(on: dict[str, Any], off: dict[str, Any]) -> str:
    """One word for what determinism did: removes / nothing_to_remove / partial / not_measured."""
    if not on.get("varied") or not off.get("varied"):
        return "not_measured"
    if off["identical_share"] == 1.0:
        return "nothing_to_remove"
    return "removes" if on["identical_share"] == 1.0 else "partial"


@remembered
def switch_pairs(runs: Sequence[Run], *, reference: str) -> list[list[Run]]:
    """[determinism on, off] runs of the reference at the same (seeds, repeat), in that point order."""
    points: dict[tuple, dict[bool, Run]] = defaultdict(dict)
    for r in runs:
        if r.profile == reference:
            points[(r.seeds, r.repeat)][r.deterministic] = r
    return [[v[True], v[False]] for _, v in sorted(points.items()) if True in v and False in v]


def switch(runs: Sequence[Run], *, reference: str, metric: str, task: str,
           measured: Measured | None = None) -> dict[str, Any]:
    """The determinism switch as its own comparison: each (seeds, repeat) run with determinism on
    paired with the same point with it off, on the reference profile.

    ``metric_delta_*`` is metric(off) − metric(on); ``fit_time_ratio_on_off`` is mean fit time on ÷ off
    over the pairs; the pair statistics (disagreement, identical_share, ...) are those of ``compare``.
    """
    pairs = switch_pairs(runs, reference=reference)
    if not pairs:
        return {"compared": 0, "note": "no run made with determinism both on and off at the same seeds"}
    d = np.array([off.metrics[metric] - on.metrics[metric] for on, off in pairs
                  if metric in on.metrics and metric in off.metrics])
    t_on = [on.fit_s for on, off in pairs if on.fit_s is not None and off.fit_s is not None]
    t_off = [off.fit_s for on, off in pairs if on.fit_s is not None and off.fit_s is not None]
    res = compare(pairs, task, measured)
    out: dict[str, Any] = {
        "compared": len(pairs),
        "identical": int(round(res["identical_share"] * len(pairs))),
        "metric_delta_mean": float(np.mean(d)) if d.size else None,
        "metric_delta_max_abs": float(np.max(np.abs(d))) if d.size else None,
        "fit_time_ratio_on_off": stats.ratio(float(np.mean(t_on)) if t_on else None,
                                             float(np.mean(t_off)) if t_off else None),
    }
    out.update({k: v for k, v in res.items() if k != "pairs"})
    return out


def determinism_stats(runs: Sequence[Run], *, reference: str, metric: str, task: str,
                      measured: Measured | None = None) -> dict[str, Any]:
    """Repeats with determinism on and off (reference profile), per-profile identity, fit-time ratio.

    The fit-time ratio is mean fit time with determinism on over mean fit time
    with it off, on the reference profile, over runs present in both modes.
    """
    ref = [r for r in runs if r.profile == reference]
    on, off = _repeats(ref, True, metric, task, measured), _repeats(ref, False, metric, task, measured)
    by_mode: dict[tuple, dict[bool, list[float]]] = defaultdict(lambda: {True: [], False: []})
    for r in ref:
        if r.fit_s is not None:
            by_mode[(r.seeds, r.repeat)][r.deterministic].append(r.fit_s)
    matched = [v for v in by_mode.values() if v[True] and v[False]]
    t_on = [t for v in matched for t in v[True]]
    t_off = [t for v in matched for t in v[False]]
    per_profile = {}
    for prof in sorted({r.profile for r in runs}):
        rep = compare(repeat_groups([r for r in runs if r.profile == prof], True), task, measured)
        if rep:
            per_profile[prof] = {"identical_share": rep["identical_share"], "max_abs_diff": rep["max_abs_diff"]}
    return {
        "repeats_on": on, "repeats_off": off, "verdict": verdict(on, off),
        "repeats_on_by_profile": per_profile,
        "fit_s_on_mean": float(np.mean(t_on)) if t_on else None,
        "fit_s_off_mean": float(np.mean(t_off)) if t_off else None,
        "fit_time_ratio_on_off": stats.ratio(float(np.mean(t_on)) if t_on else None,
                                             float(np.mean(t_off)) if t_off else None),
        "fit_time_pairs": len(matched),
        "switch": switch(runs, reference=reference, metric=metric, task=task, measured=measured),
    }
