"""Per-source statistics: group runs that differ in exactly one source, then measure the spread.

Sources and their groups (runs in one group share everything else):

- init / shuffle / split: reference profile, repeat 0, determinism in the
  comparison mode; grouped by the other two seeds;
- nondeterminism: reference profile, determinism off; grouped by all seeds
  (the members are repeats);
- hardware: repeat 0, determinism in the comparison mode; grouped by all
  seeds (the members are profiles).

The comparison mode is determinism on when the plan has it (the mode every
profile repeats), else off.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Sequence

import numpy as np

from driftlab.drift import stats
from driftlab.drift.pairs import compare
from driftlab.drift.runs import Run

SOURCES = ("init", "shuffle", "split", "nondeterminism", "hardware")
SEED_SOURCES = ("init", "shuffle", "split")
SEED_INDEX = {"init": 0, "shuffle": 1, "split": 2}
LABELS = {"init": "weight init", "shuffle": "batch order", "split": "train/val split",
          "nondeterminism": "run-to-run nondeterminism", "hardware": "hardware profile"}
NOT_VARIED = {
    "init": "not varied: one init seed in the plan",
    "shuffle": "not varied: one shuffle seed in the plan",
    "split": "not varied: one split seed in the plan",
    "nondeterminism": "not varied: no repeats with determinism off",
    "hardware": "not varied: one profile ran",
}


def comparison_mode(runs: Sequence[Run]) -> bool:
    """Determinism on when any run has it (every profile repeats those), else off."""
    return any(r.deterministic for r in runs)


def _grouped(runs: Sequence[Run], key: Callable[[Run], tuple]) -> list[list[Run]]:
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        groups[key(r)].append(r)
    return [sorted(g, key=lambda r: (r.profile, r.seeds, r.repeat)) for g in groups.values() if len(g) >= 2]


def source_groups(runs: Sequence[Run], source: str, reference: str, mode: bool) -> list[list[Run]]:
    """Groups of runs that differ only in ``source`` (see module docstring)."""
    ref = [r for r in runs if r.profile == reference]
    if source in SEED_INDEX:
        i = SEED_INDEX[source]
        pool = [r for r in ref if r.repeat == 0 and r.deterministic == mode]
        return _grouped(pool, lambda r: tuple(s for j, s in enumerate(r.seeds) if j != i))
    if source == "nondeterminism":
        return _grouped([r for r in ref if not r.deterministic], lambda r: r.seeds)
    if source == "hardware":
        pool = [r for r in runs if r.repeat == 0 and r.deterministic == mode]
        return _grouped(pool, lambda r: r.seeds)
    raise ValueError(f"unknown source '{source}'; one of {', '.join(SOURCES)}")


def metric_spread(groups: Sequence[Sequence[Run]], metric: str) -> dict[str, Any]:
    """Pooled within-group SD of one metric, with bootstrap and normal-theory 95% CIs."""
    values = [[r.metrics[metric] for r in g if metric in r.metrics] for g in groups]
    var, df = stats.pooled_variance(values)
    sd = None if var is None else float(np.sqrt(var))
    flat = [v for g in values for v in g]
    return {"sd": sd, "ci95": stats.bootstrap_ci(values), "ci95_normal": stats.chi2_ci(sd, df), "df": df,
            "mean": float(np.mean(flat)) if flat else None}


def source_stats(runs: Sequence[Run], source: str, *, reference: str, mode: bool, metric: str,
                 metric_names: Sequence[str], task: str) -> dict[str, Any]:
    """Everything the report shows for one source; ``{"varied": False, "note": ...}`` when it was not varied."""
    groups = source_groups(runs, source, reference, mode)
    if not groups:
        return {"varied": False, "label": LABELS[source], "note": NOT_VARIED[source]}
    metrics = {m: metric_spread(groups, m) for m in metric_names}
    primary = metrics.get(metric) or metric_spread(groups, metric)
    n_eval = groups[0][0].n_eval
    floor = stats.noise_floor(primary["mean"], n_eval) if metric == "accuracy" else None
    out: dict[str, Any] = {
        "varied": True, "label": LABELS[source], "groups": len(groups), "runs": sum(len(g) for g in groups),
        "levels": max(len(g) for g in groups),
        "metric_sd": primary["sd"], "metric_sd_ci95": primary["ci95"],
        "metric_sd_ci95_normal": primary["ci95_normal"], "metric_df": primary["df"],
        "metric_mean": primary["mean"], "noise_floor": floor,
        "sd_to_noise_floor": stats.ratio(primary["sd"], floor), "metrics": metrics,
    }
    out.update(compare(groups, task))
    return out


def seed_noise(runs: Sequence[Run], sources: dict[str, Any], *, reference: str, mode: bool,
               metric: str) -> dict[str, Any]:
    """The spread seeds alone cause on the reference: pooled over init, shuffle and split groups.

    Hardware drift is divided by this SD (drift / seed-noise ratio). Pair
    averages are combined from the per-source results, weighted by pairs.
    """
    groups = [g for s in SEED_SOURCES for g in source_groups(runs, s, reference, mode)]
    if not groups:
        return {"sd": None, "disagreement": None, "note": "no seed was varied: seed noise unknown"}
    var, df = stats.pooled_variance([[r.metrics[metric] for r in g if metric in r.metrics] for g in groups])
    varied = [sources[s] for s in SEED_SOURCES if sources[s].get("varied")]
    pairs = sum(s["pairs"] for s in varied)
    return {"sd": None if var is None else float(np.sqrt(var)), "df": df,
            "disagreement": sum(s["disagreement"] * s["pairs"] for s in varied) / pairs,
            "rms_diff": float(np.sqrt(sum(s["rms_diff"] ** 2 * s["pairs"] for s in varied) / pairs))}
