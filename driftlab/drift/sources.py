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
from driftlab.drift.groupstats import Measured
from driftlab.drift.memo import remembered
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


@remembered
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


def _level(r: Run, source: str) -> Any:
    return r.seeds[SEED_INDEX[source]] if source in SEED_INDEX else r.profile


def _key(r: Run, source: str) -> tuple:
    return tuple(x for j, x in enumerate(r.seeds) if source not in SEED_INDEX or j != SEED_INDEX[source])


def crossed_table(groups: Sequence[Sequence[Run]], source: str, metric: str) -> np.ndarray | None:
    """The groups as a balanced crossed table: axis 0 the source's levels, then one axis per held-fixed seed.

    None when a cell is missing or repeated (unbalanced), or for nondeterminism (repeats share no level).
    """
    if source == "nondeterminism":
        return None
    runs = [r for g in groups for r in g if metric in r.metrics]
    if not runs:
        return None
    held = [_key(r, source) for r in runs]
    levels = sorted({_level(r, source) for r in runs}, key=str)
    keys = [sorted({k[j] for k in held}) for j in range(len(held[0]))]
    shape = (len(levels), *[len(k) for k in keys])
    if len(runs) != int(np.prod(shape)):
        return None
    at = [{v: i for i, v in enumerate(axis)} for axis in (levels, *keys)]  # each level's position on its axis
    y = np.full(shape, np.nan)
    for r, k in zip(runs, held):
        idx = (at[0][_level(r, source)], *[at[j + 1][x] for j, x in enumerate(k)])
        if not np.isnan(y[idx]):
            return None
        y[idx] = r.metrics[metric]
    return None if np.isnan(y).any() else y


def level_interval(groups: Sequence[Sequence[Run]], source: str, metric: str, var: float | None,
                   df: int) -> dict[str, Any]:
    """The 95% interval on a source's SD that respects how many independent levels it has.

    Balanced crossed groups: Graybill-Wang interval over the ANOVA terms containing the source
    (Satterthwaite df reported as ``df_effective``). Otherwise a chi-square interval with df = the
    pooled df when no level is shared between groups (repeats; a single sweep: L levels, L - 1 df),
    else the conservative df = levels - 1.
    """
    values = [r for g in groups for r in g if metric in r.metrics]
    n_levels = (max(len(g) for g in groups) if source == "nondeterminism"
                else len({_level(r, source) for r in values}))
    table = crossed_table(groups, source, metric) if len(groups) > 1 else None
    if table is not None:
        res = stats.crossed_sd_interval(table, 0)
        return {"levels": n_levels, "df_effective": res["df_effective"], "ci95": res["ci95"],
                "ci_method": "Graybill-Wang interval over the crossed ANOVA terms containing the source "
                             f"({n_levels} levels, Satterthwaite df {res['df_effective']:.1f})"}
    if source == "nondeterminism" or len(groups) == 1:
        nu, how = float(df), "independent runs" if source == "nondeterminism" else "one sweep"
    else:
        nu, how = float(max(n_levels - 1, 1)), "unbalanced groups sharing levels: conservative df = levels - 1"
    return {"levels": n_levels, "df_effective": nu if df else None, "ci95": stats.sd_ci_from_var(var, nu),
            "ci_method": f"chi-square interval, df {nu:g} ({how})"}


def metric_spread(groups: Sequence[Sequence[Run]], metric: str, source: str = "init") -> dict[str, Any]:
    """Pooled within-group SD of one metric with its level-aware 95% CI (see :func:`level_interval`)."""
    values = [[r.metrics[metric] for r in g if metric in r.metrics] for g in groups]
    var, df = stats.pooled_variance(values)
    sd = None if var is None else float(np.sqrt(var))
    flat = [v for g in values for v in g]
    out = {"sd": sd, "df": df, "mean": float(np.mean(flat)) if flat else None}
    if var is None:
        out.update(ci95=None, ci95_normal=None, df_effective=None, levels=None, ci_method=None)
    else:
        ivl = level_interval(groups, source, metric, var, df)
        out.update(ci95=ivl["ci95"], df_effective=ivl["df_effective"], levels=ivl["levels"],
                   ci_method=ivl["ci_method"],
                   ci95_normal=stats.sd_ci_from_var(var, ivl["df_effective"]) if ivl["df_effective"] else None)
    return out


def source_stats(runs: Sequence[Run], source: str, *, reference: str, mode: bool, metric: str,
                 metric_names: Sequence[str], task: str, measured: Measured | None = None) -> dict[str, Any]:
    """Everything the report shows for one source; ``{"varied": False, "note": ...}`` when it was not varied."""
    groups = source_groups(runs, source, reference, mode)
    if not groups:
        return {"varied": False, "label": LABELS[source], "note": NOT_VARIED[source]}
    metrics = {m: metric_spread(groups, m, source) for m in metric_names}
    primary = metrics.get(metric) or metric_spread(groups, metric, source)
    n_eval = groups[0][0].n_eval
    floor = stats.noise_floor(primary["mean"], n_eval) if metric == "accuracy" else None
    out: dict[str, Any] = {
        "varied": True, "label": LABELS[source], "groups": len(groups), "runs": sum(len(g) for g in groups),
        "levels": primary["levels"] or max(len(g) for g in groups),
        "metric_sd": primary["sd"], "metric_sd_ci95": primary["ci95"],
        "metric_sd_ci95_normal": primary["ci95_normal"],
        "metric_df": primary["df"], "metric_df_effective": primary["df_effective"], "ci_method": primary["ci_method"],
        "metric_mean": primary["mean"], "noise_floor": floor,
        "sd_to_noise_floor": stats.ratio(primary["sd"], floor),
        "levels_to_tell": stats.levels_to_tell(primary["sd"], floor), "metrics": metrics,
    }
    out.update(compare(groups, task, measured))
    return out


def seed_noise(runs: Sequence[Run], sources: dict[str, Any], *, reference: str, mode: bool,
               metric: str) -> dict[str, Any]:
    """The spread seeds alone cause on the reference: pooled over init, shuffle and split groups.

    Hardware drift is divided by this SD (drift / seed-noise ratio). Pair
    averages are combined from the per-source results, weighted by pairs.
    """
    per_source = {s: source_groups(runs, s, reference, mode) for s in SEED_SOURCES}
    groups = [g for s in SEED_SOURCES for g in per_source[s]]
    if not groups:
        return {"sd": None, "disagreement": None, "note": "no seed was varied: seed noise unknown"}
    values = [[r.metrics[metric] for r in g if metric in r.metrics] for g in groups]
    var, _ = stats.pooled_variance(values)
    varied = [sources[s] for s in SEED_SOURCES if sources[s].get("varied")]
    pairs = sum(s["pairs"] for s in varied)
    distinct, df = _distinct_df([r for g in groups for r in g if metric in r.metrics], groups)
    out = {"sd": None if var is None else float(np.sqrt(var)), "runs": distinct, "df": df,
           "disagreement": sum(s["disagreement"] * s["pairs"] for s in varied) / pairs,
           "rms_diff": float(np.sqrt(sum(s["rms_diff"] ** 2 * s["pairs"] for s in varied) / pairs))}
    out.update(_seed_noise_interval(per_source, metric, var, df))
    return out


def _distinct_df(members: Sequence[Run], groups: Sequence[Sequence[Run]]) -> tuple[int, int]:
    """Distinct runs in the groups and their df: distinct runs minus connected components (runs shared by
    two groups count once; each set of groups linked by shared runs spends one df on its mean)."""
    ids = {id(r): i for i, r in enumerate({id(r): r for r in members}.values())}
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for g in groups:
        idx = [ids[id(r)] for r in g if id(r) in ids]
        for i in idx[1:]:
            parent[find(i)] = find(idx[0])
    components = len({find(i) for i in range(len(ids))})
    return len(ids), len(ids) - components


def _seed_noise_interval(per_source: dict[str, list[list[Run]]], metric: str, var: float | None,
                         df: int) -> dict[str, Any]:
    """95% CI of the seed-noise SD: Graybill-Wang over the crossed seed table's terms, each weighted by how many
    varied seed factors it holds (the pooled estimate counts a term once per source containing it); otherwise
    chi-square with the distinct-run df."""
    varied = [s for s in SEED_SOURCES if per_source[s]]
    table = crossed_table(per_source[varied[0]], varied[0], metric) if len(per_source[varied[0]]) > 1 else None
    if var is None:
        return {"df_effective": None, "ci95": None}
    if table is not None and len(varied) > 1:
        # Axis 0 is varied[0]; the others follow in SEED_SOURCES order without it.
        axes = [varied[0]] + [s for s in SEED_SOURCES if s != varied[0]]
        counts = [(ss, d, sum(1 for a in ax if axes[a] in varied)) for ax, ss, d in stats.crossed_terms(table)]
        counts = [c for c in counts if c[2]]
        denom = sum(d * n for _, d, n in counts)
        if denom:
            ss, d, n = zip(*counts)
            w = [k / denom for k in n]
            ci = stats.mls_var_ci(ss, d, w)
            return {"df_effective": stats.satterthwaite_df(ss, d, w),
                    "ci95": [float(np.sqrt(ci[0])), float(np.sqrt(ci[1]))]}
    return {"df_effective": float(df) if df else None, "ci95": stats.sd_ci_from_var(var, df) if df else None}
