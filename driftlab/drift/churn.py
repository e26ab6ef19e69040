"""Per-example statistics of each source: churn (Zhuang et al., MLSys 2022) and Jordan's check (ICLR 2024).

Both use the groups of :func:`driftlab.drift.sources.source_groups` (runs that
differ only in the source) and the fixed evaluation rows.

**Churn** (classification). In a group of k runs, row i *flips* when the runs
predict more than one class for it. Its flip rate is the share of run pairs
whose predicted labels differ there, ``1 - sum_c m_c(m_c-1) / (k(k-1))``
(``m_c`` runs predict class c); the mean of the flip rates over rows is the
source's ``disagreement``. ``flip_share``: share of (group, row) that flip at
least once; ``row_rates``: each row's flip rate averaged over groups; the most
unstable rows are the ones with the highest rate. Regression has no flips:
the per-row SD of the predictions across a group's runs (ddof 1, pooled over
groups as ``sqrt(mean var)``, in target units) takes the rate's place.

**Jordan's check** (classification, needs the true labels). If runs differed
only in *which* examples they get right, each example independently right
with probability p_i, a run's accuracy (the mean of n Bernoulli(p_i)) would
vary across runs by ``Var = sum_i p_i(1-p_i) / n²``. p_i is estimated from the
group's k runs; ``k/(k-1)·p̂(1-p̂)`` is unbiased for p(1-p), so the predicted
variance of a group is ``sum_i sum_r (c_ri - p̂_i)² / ((k-1) n²)`` (c_ri: run r
right on row i), pooled over groups with their df ``sum (k_g - 1)``. The
observed variance is the pooled within-group variance of the runs' accuracies
(computed from the same labels). ``ratio = observed / predicted``; its 95% CI
treats the observed variance as ``σ² χ²_df / df`` (the predicted one rests on
n·k terms and is taken as known): ``[ratio·df/χ²_0.975, ratio·df/χ²_0.025]``.
A CI containing 1: the seed variance is what independent per-example flips
predict; above 1: runs differ in real quality (correlated errors); below 1:
runs trade errors (a run right on one row is wrong on another).

Each group's per-row counts and sums of squares are measured once from its
arrays (``driftlab.drift.groupstats``) and combined here in the groups' order.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from driftlab.drift.groupstats import Measured
from driftlab.drift.runs import Run
from driftlab.drift.sources import SEED_SOURCES, SOURCES, source_groups

TOP_UNSTABLE = 20
HIST_BINS = 10
CI_LEVEL = 0.95
ROW_CHUNK = 256  # evaluation rows combined at once: (groups x 256) floats, the same means as all rows at once


def _usable(groups: Sequence[Sequence[Run]]) -> list[list[Run]]:
    """Groups of ≥ 2 runs whose predictions have the shape of the first group's (one evaluation set)."""
    groups = [list(g) for g in groups if len(g) >= 2]
    if not groups:
        return []
    shape = groups[0][0].shape
    return [g for g in groups if all(r.shape == shape for r in g)]


def _row_means(rows_of: Sequence[Any], n: int) -> np.ndarray:
    """``np.array([rows_of[g](lo, hi) ...]).mean(axis=0)`` over all groups, taken ROW_CHUNK columns at a time."""
    out = np.empty(n, dtype=np.float64)
    for lo in range(0, n, ROW_CHUNK):
        hi = min(n, lo + ROW_CHUNK)
        out[lo:hi] = np.array([rows(lo, hi) for rows in rows_of]).mean(axis=0)
    return out


def _histogram(values: np.ndarray, *, upper: float | None = None) -> dict[str, Any]:
    hi = float(upper if upper is not None else (values.max() if values.size else 1.0)) or 1.0
    counts, edges = np.histogram(values, bins=HIST_BINS, range=(0.0, hi))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _top(rates: np.ndarray) -> tuple[list[int], list[float]]:
    order = np.lexsort((np.arange(rates.size), -rates))[:TOP_UNSTABLE]  # highest first, ties by row index
    order = [int(i) for i in order if rates[i] > 0]
    return order, [float(rates[i]) for i in order]


def churn(groups: Sequence[Sequence[Run]], task: str, measured: Measured | None = None) -> dict[str, Any] | None:
    """Churn of one source's groups (module docstring); None when no group has two comparable runs."""
    groups = _usable(groups)
    if not groups:
        return None
    measured = measured or Measured(task)
    stats = [measured.get(g, examples=True) for g in groups]
    if stats[0].same is not None:
        n = stats[0].same.size

        def flip_rates(s, k):  # per-row share of run pairs whose labels differ
            return lambda lo, hi: 1.0 - s.same[lo:hi].astype(np.float64) / (k * (k - 1))

        rates = _row_means([flip_rates(s, len(g)) for s, g in zip(stats, groups)], n)
        flipped = sum(int(np.count_nonzero(s.same < len(g) * (len(g) - 1))) for s, g in zip(stats, groups))
        rows, top_rates = _top(rates)
        return {"measure": "flip_rate", "groups": len(groups), "n_eval": int(rates.size),
                "flip_share": float(np.float64(flipped) / (len(groups) * n)) if n else float("nan"),
                "flip_rate_mean": float(rates.mean()),
                "flip_rate_max": float(rates.max()) if rates.size else 0.0,
                "histogram": _histogram(rates, upper=1.0),
                "unstable_rows": rows, "unstable_rates": top_rates}
    n = stats[0].row_var.size
    row_sd = np.sqrt(_row_means([(lambda lo, hi, s=s: s.row_var[lo:hi]) for s in stats], n))
    rows, top_sd = _top(row_sd)
    return {"measure": "prediction_sd", "groups": len(groups), "n_eval": int(row_sd.size),
            "note": "regression: the per-row SD of predictions across runs (target units) instead of flips",
            "row_sd_rms": float(np.sqrt(np.mean(row_sd ** 2))), "row_sd_max": float(row_sd.max()),
            "changed_share": float(np.mean(row_sd > 0)),
            "histogram": _histogram(row_sd), "unstable_rows": rows, "unstable_rates": top_sd}


def independent_df(groups: Sequence[Sequence[Run]]) -> int:
    """Degrees of freedom of groups that may share runs: distinct runs minus linked sets of groups.

    Pooling the init, shuffle and split groups of a factorial counts every run in three groups;
    their sum of (k − 1) would claim 12 df from 8 runs. Linked groups form one set.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for g in groups:
        keys = [r.key for r in g]
        for other in keys[1:]:
            parent[find(other)] = find(keys[0])
        find(keys[0])
    return len(parent) - len({find(k) for k in parent})


def jordan(groups: Sequence[Sequence[Run]], *, ci_df: int | None = None,
           measured: Measured | None = None) -> dict[str, Any] | None:
    """Observed ÷ independent-flip-predicted variance of accuracy (module docstring); None if not computable.

    ``ci_df``: the degrees of freedom of the interval when the groups share runs (``independent_df``).
    """
    groups = _usable(groups)
    measured = measured or Measured("classification")
    obs_ss, pred_ss, df, n_runs = 0.0, 0.0, 0, 0
    n = None
    for g in groups:
        j = measured.get(g, examples=True).jordan
        if j is None:
            continue
        k = len(g)
        obs_ss += j[0]
        pred_ss += j[1]
        n = j[2]
        df += k - 1
        n_runs += k
    if not df or not n:
        return None
    observed, predicted = obs_ss / df, pred_ss / df
    ratio = observed / predicted if predicted > 0 else None
    df = min(df, ci_df) if ci_df else df  # shared runs are not independent draws
    ci = None
    if ratio is not None:
        from scipy.stats import chi2

        alpha = 1 - CI_LEVEL
        ci = [float(ratio * df / chi2.ppf(1 - alpha / 2, df)), float(ratio * df / chi2.ppf(alpha / 2, df))]
    if ratio is None:
        verdict = "no_flips" if observed == 0 else "undefined"
    elif ci[0] <= 1.0 <= ci[1]:
        verdict = "independent"
    else:
        verdict = "excess" if ci[0] > 1.0 else "deficit"
    return {"observed_var": observed, "predicted_var": predicted, "ratio": ratio, "ci95": ci, "df": df,
            "runs": n_runs, "n_eval": int(n), "observed_sd": float(np.sqrt(observed)),
            "predicted_sd": float(np.sqrt(predicted)), "verdict": verdict}


def jordan_sentence(j: dict[str, Any], where: str) -> str:
    """Jordan's check in words."""
    if j["verdict"] == "no_flips":
        return f"{where}: no eval prediction changes between runs, so Jordan's check has nothing to test."
    if j["verdict"] == "undefined":
        return f"{where}: accuracy moves although no row flips; Jordan's check is undefined."
    ci = j["ci95"]
    head = (f"{where}: observed accuracy variance ÷ independent-flip prediction = {j['ratio']:.2f} "
            f"(95% CI {ci[0]:.2f}–{ci[1]:.2f}, df {j['df']}): ")
    if j["verdict"] == "independent":
        return head + "seed variance is what independent per-example flips predict: no evidence that runs differ " \
                      "in real quality."
    if j["verdict"] == "excess":
        return head + "seed variance exceeds what independent per-example flips predict: runs differ in real " \
                      "quality, not only in which examples they get right."
    return head + "seed variance is below what independent per-example flips predict: runs trade errors " \
                  "(examples flip together in opposite directions)."


def example_stats(runs: Sequence[Run], *, reference: str, mode: bool, task: str,
                  sources: dict[str, Any], measured: Measured | None = None) -> dict[str, Any]:
    """``churn`` and ``jordan`` blocks of the report: per varied source; Jordan also pooled over seed sources."""
    churn_out: dict[str, Any] = {}
    jordan_out: dict[str, Any] = {}
    seed_groups: list[list[Run]] = []
    for s in SOURCES:
        if not (sources.get(s) or {}).get("varied"):
            continue
        groups = source_groups(runs, s, reference, mode)
        c = churn(groups, task, measured)
        if c is not None:
            churn_out[s] = c
        if s in SEED_SOURCES:
            seed_groups += groups
        if task == "classification":
            j = jordan(groups, measured=measured)
            if j is not None:
                jordan_out[s] = j
    if task == "classification" and seed_groups:
        j = jordan(seed_groups, ci_df=independent_df(_usable(seed_groups)), measured=measured)
        if j is not None:
            jordan_out["seed"] = j
    if task != "classification":
        jordan_out = {"note": "classification only: regression has no per-example correctness"}
    elif not jordan_out:
        jordan_out = {"note": "no source with two runs and true labels"}
    return {"churn": churn_out, "jordan": jordan_out}
