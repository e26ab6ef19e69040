"""Assemble the variance decomposition from run records (estimator: see ``components``)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Sequence

import numpy as np

from driftlab.drift.anova import (MIN_SHARE_LEVELS, SHARE_BOOTSTRAP, SHARE_SEED, anova_batch, anova_components,
                                  percentile_ci, shares, simulated_chunks)
from driftlab.drift.runs import Run

GROUPS = ("init", "shuffle", "split", "hardware", "interactions", "nondeterminism", "residual")
FACTORIAL_METHOD = ("random-effects ANOVA (expected mean squares) on the balanced crossed design "
                    "{factors}, {r} repeat(s) per cell; negative estimates truncated to 0")
ONE_AT_A_TIME_METHOD = ("one-at-a-time: each source's variance is its pooled within-group variance; "
                        "interactions cannot be separated in this plan")


def _factorial(runs: Sequence[Run], *, reference: str, mode: bool, metric: str) -> dict[str, Any] | None:
    """The largest balanced crossed table: reference plus every profile with all cells; None if none."""
    pool = [r for r in runs if r.deterministic == mode and metric in r.metrics]
    ref = [r for r in pool if r.profile == reference]
    if not ref:
        return None
    levels = [sorted({r.seeds[i] for r in ref}) for i in range(3)]
    cells: dict[str, dict[tuple, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for r in pool:
        cells[r.profile][r.seeds].append(r)
    need = int(np.prod([len(x) for x in levels]))

    def complete(prof: str) -> bool:
        return sum(1 for s in cells[prof] if all(s[i] in levels[i] for i in range(3))) == need

    if not complete(reference):
        return None
    profiles = [reference] + sorted(p for p in cells if p != reference and complete(p))
    r = min(len(cells[p][s]) for p in profiles for s in cells[p] if all(s[i] in levels[i] for i in range(3)))
    y = np.empty((len(levels[0]), len(levels[1]), len(levels[2]), len(profiles), r))
    for pi, p in enumerate(profiles):
        for seeds, members in cells[p].items():
            if all(seeds[i] in levels[i] for i in range(3)):
                idx = tuple(levels[i].index(seeds[i]) for i in range(3))
                members = sorted(members, key=lambda m: m.repeat)[:r]
                y[idx + (pi,)] = [m.metrics[metric] for m in members]
    names = ["init", "shuffle", "split", "hardware"]
    keep = [i for i in range(4) if y.shape[i] >= 2]
    if not keep and r < 2:
        return None
    # Factors with one level carry no variance: average them out of the table.
    y = y.reshape([y.shape[i] for i in range(4) if i in keep] + [-1]) if keep else y.reshape(1, -1)
    factor_names = [names[i] for i in keep] if keep else ["none"]
    return {"y": y, "names": factor_names, "profiles": profiles, "repeats": r}


def decompose(runs: Sequence[Run], *, reference: str, mode: bool, metric: str,
              sources: dict[str, Any], draw: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Shares of the metric's variance by source, with the method used and the raw terms (``draw``: what
    runs :func:`factorial_draws`, e.g. a helper process)."""
    table = _factorial(runs, reference=reference, mode=mode, metric=metric)
    nondet = sources.get("nondeterminism", {})
    nondet_var = nondet["metric_sd"] ** 2 if nondet.get("varied") and nondet.get("metric_sd") is not None else None
    if table is not None and table["names"] != ["none"]:
        res = anova_components(table["y"], table["names"])
        terms = [{"name": t["name"], "df": t["df"], "mean_square": t["mean_square"],
                  "variance_raw": t["variance_raw"], "variance": t["variance"]} for t in res["terms"]]
        grouped = {g: None for g in GROUPS}
        for t in res["terms"]:
            key = t["name"] if len(t["factors"]) == 1 else "interactions"
            grouped[key] = (grouped[key] or 0.0) + t["variance"]
        resid_name = "residual" if mode else "nondeterminism"
        what = ("repeats with determinism on" if mode else "repeats with determinism off")
        if not res["residual_separable"]:
            what = "not separable with one repeat per cell (inside the highest interaction)"
        grouped[resid_name] = res["residual"]["variance"] if res["residual_separable"] else None
        terms.append({"name": resid_name, "df": res["residual"]["df"], "mean_square": res["residual"]["mean_square"],
                      "variance_raw": res["residual"]["variance"], "variance": res["residual"]["variance"],
                      "what": what})
        if mode and nondet_var is not None:
            grouped["nondeterminism"] = nondet_var
            terms.append({"name": "nondeterminism", "variance_raw": nondet_var, "variance": nondet_var,
                          "what": "within-cell variance of repeats with determinism off (reference profile)"})
        method = FACTORIAL_METHOD.format(factors=" × ".join(table["names"]), r=table["repeats"])
        design = "factorial"
        levels = dict(zip(table["names"], table["y"].shape))
        draws = (draw or factorial_draws)(res, table, mode, nondet_var, nondet.get("metric_df") or 0)
    else:
        grouped = {g: None for g in GROUPS}
        for s in ("init", "shuffle", "split", "hardware", "nondeterminism"):
            st = sources.get(s, {})
            if st.get("varied") and st.get("metric_sd") is not None:
                grouped[s] = st["metric_sd"] ** 2
        terms = [{"name": k, "variance_raw": v, "variance": v} for k, v in grouped.items() if v is not None]
        method, design = ONE_AT_A_TIME_METHOD, "one-at-a-time"
        levels = {s: sources[s].get("levels") for s in grouped if grouped[s] is not None and s != "nondeterminism"}
        draws = _one_at_a_time_draws(grouped, sources)
    present = {k: v for k, v in grouped.items() if v is not None}
    total = sum(present.values())
    point = shares(present) if present else {}
    intervals, notes = {}, {}
    for k in point:
        n_levels = levels.get(k)
        if n_levels is not None and n_levels < MIN_SHARE_LEVELS:
            point[k] = None
            notes[k] = f"not estimable from {n_levels} levels (a share needs at least {MIN_SHARE_LEVELS})"
        elif draws and k in draws:
            intervals[k] = percentile_ci(draws[k])
    return {"design": design, "method": method, "metric": metric,
            "total_variance": total if present else None,
            "variances": present, "shares": point, "shares_ci95": intervals, "share_notes": notes,
            "share_levels": {k: v for k, v in levels.items() if v is not None},
            "share_ci_method": (f"parametric bootstrap of the fitted random-effects model ({SHARE_BOOTSTRAP} draws, "
                                f"seed {SHARE_SEED}), 2.5-97.5 percentiles") if present else None,
            "terms": terms, "profiles": table["profiles"] if table else None}


def _shares_of(draws: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    total = sum(draws.values())
    safe = np.where(total > 0, total, 1.0)
    return {k: np.where(total > 0, v / safe, np.nan) for k, v in draws.items()}


def factorial_draws(res: dict[str, Any], table: dict[str, Any], mode: bool, nondet_var: float | None,
                    nondet_df: int) -> dict[str, np.ndarray] | None:
    """Shares re-estimated on tables drawn from the fitted model (the same estimator as the report)."""
    y = table["y"]
    rng = np.random.default_rng(SHARE_SEED)
    out: dict[str, list[np.ndarray]] = {}
    for sims in simulated_chunks(res, y.shape[:-1], y.shape[-1], rng, SHARE_BOOTSTRAP):
        rb = anova_batch(sims, table["names"])
        g: dict[str, np.ndarray] = {}
        for t in rb["terms"]:
            key = t["name"] if len(t["factors"]) == 1 else "interactions"
            g[key] = g.get(key, 0.0) + t["variance"]
        if rb["residual_separable"]:
            g["residual" if mode else "nondeterminism"] = rb["residual"]["variance"]
        for k, v in g.items():
            out.setdefault(k, []).append(v)
    draws = {k: np.concatenate(v) for k, v in out.items()}
    if mode and nondet_var is not None:
        df = max(int(nondet_df), 1)
        draws["nondeterminism"] = nondet_var * rng.chisquare(df, SHARE_BOOTSTRAP) / df
    shares_ = _shares_of(draws)
    return {k: v[np.isfinite(v)] for k, v in shares_.items() if np.isfinite(v).any()}


def _one_at_a_time_draws(grouped: dict[str, float | None], sources: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """Each source's variance drawn as ``v * chi2(nu) / nu`` with its level-aware effective df."""
    rng = np.random.default_rng(SHARE_SEED)
    draws = {}
    for k, v in grouped.items():
        if v is None:
            continue
        nu = sources.get(k, {}).get("metric_df_effective") or sources.get(k, {}).get("metric_df") or 1
        draws[k] = v * rng.chisquare(float(nu), SHARE_BOOTSTRAP) / float(nu)
    shares_ = _shares_of(draws)
    return {k: v[np.isfinite(v)] for k, v in shares_.items() if np.isfinite(v).any()}
