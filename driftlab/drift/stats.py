"""Small statistics with known answers: SDs, their confidence intervals, the test-set noise floor.

Every function returns ``None`` instead of NaN when a quantity is not defined
(fewer than two values, zero degrees of freedom), so that a report can say
"not varied" instead of printing NaN or dividing by zero.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed: the same records always give the same interval
CI_LEVEL = 0.95


def sd(values: Sequence[float]) -> float | None:
    """Sample SD (ddof=1) of the values, or None with fewer than two."""
    return float(np.std(np.asarray(values, dtype=np.float64), ddof=1)) if len(values) >= 2 else None


def _group_arrays(groups: Sequence[Sequence[float]]) -> list[np.ndarray]:
    return [np.asarray(g, dtype=np.float64) for g in groups if len(g) >= 2]


def pooled_variance(groups: Sequence[Sequence[float]]) -> tuple[float | None, int]:
    """Within-group variance pooled over groups, and its degrees of freedom.

    Each group holds runs that differ only in the source being measured, so the
    spread inside a group is that source's effect alone.
    """
    usable = _group_arrays(groups)
    df = sum(len(g) - 1 for g in usable)
    if not df:
        return None, 0
    return sum(_sum_squares(g) for g in usable) / df, df


def _sum_squares(g: np.ndarray) -> float:
    # Equal values give exactly 0, not the round-off of subtracting their computed mean.
    return 0.0 if np.ptp(g) == 0 else float(np.sum((g - g.mean()) ** 2))


def pooled_sd(groups: Sequence[Sequence[float]]) -> float | None:
    """Square root of :func:`pooled_variance`; None when no group has two values."""
    var, _ = pooled_variance(groups)
    return None if var is None else math.sqrt(var)


def bootstrap_ci(groups: Sequence[Sequence[float]], *, n_boot: int = BOOTSTRAP_SAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> list[float] | None:
    """95% percentile bootstrap interval of the pooled SD.

    With two or more groups the groups are resampled whole (a cluster
    bootstrap: runs inside a group share everything but the source, so they
    are not independent draws of the pooled SD). With one group its runs are
    resampled. Vectorised: the cost does not depend on ``n_boot`` in Python.

    Args:
        groups: Metric values, one list per group of runs that differ only in the source.
        n_boot: Bootstrap resamples.
        seed: Seed of the resampling generator.

    Returns:
        ``[low, high]``, or None when no group has two values.
    """
    usable = _group_arrays(groups)
    if not usable:
        return None
    rng = np.random.default_rng(seed)
    alpha = (1 - CI_LEVEL) / 2 * 100
    if len(usable) == 1:
        g = usable[0]
        sample = g[rng.integers(0, len(g), size=(n_boot, len(g)))]
        stats = np.where(np.ptp(sample, axis=1) == 0, 0.0, np.std(sample, axis=1, ddof=1))
    else:
        ss = np.array([_sum_squares(g) for g in usable])
        df = np.array([len(g) - 1 for g in usable], dtype=np.float64)
        pick = rng.integers(0, len(usable), size=(n_boot, len(usable)))
        stats = np.sqrt(ss[pick].sum(axis=1) / df[pick].sum(axis=1))
    lo, hi = np.percentile(stats, [alpha, 100 - alpha])
    return [float(lo), float(hi)]


def chi2_ci(sd_value: float | None, df: int) -> list[float] | None:
    """Normal-theory 95% interval of an SD with ``df`` degrees of freedom.

    ``[s*sqrt(df/chi2_hi), s*sqrt(df/chi2_lo)]``: exact when the values are
    normal; shown beside the bootstrap interval, which is rough for few groups.
    """
    if sd_value is None or df < 1:
        return None
    from scipy.stats import chi2

    alpha = 1 - CI_LEVEL
    lo = sd_value * math.sqrt(df / chi2.ppf(1 - alpha / 2, df))
    hi = sd_value * math.sqrt(df / chi2.ppf(alpha / 2, df))
    return [float(lo), float(hi)]


def noise_floor(p: float | None, n: int) -> float | None:
    """Binomial SE ``sqrt(p(1-p)/n)`` of an accuracy measured on n test rows.

    Differences below it are test-set sampling noise, not drift. None when
    undefined (no rows, no accuracy).
    """
    if p is None or not n or not math.isfinite(p):
        return None
    return float(math.sqrt(max(p * (1 - p), 0.0) / n))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return float(numerator / denominator)


# --- Level-aware intervals ---------------------------------------------------------------------
#
# Runs that share a seed level are not independent draws of that seed's effect: with L levels of
# a source there are only L - 1 degrees of freedom on its main effect, however many runs there
# are. The intervals below are chi-square intervals on the variance with Satterthwaite's
# effective degrees of freedom from the ANOVA sums of squares of the crossed table.

MAX_ADVICE_LEVELS = 64  # "more than 64 levels" beyond this


def chi2_var_ci(var: float | None, df: float) -> list[float] | None:
    """95% interval ``[var*df/chi2_0.975(df), var*df/chi2_0.025(df)]`` of a variance; df may be fractional.

    A zero or negative estimate gives lower bound 0 (and upper bound 0 for an exact 0: no spread
    was observed at all, e.g. bitwise-identical runs).
    """
    if var is None or not df or df <= 0 or not math.isfinite(var):
        return None
    from scipy.stats import chi2

    alpha = 1 - CI_LEVEL
    v = max(float(var), 0.0)
    return [float(v * df / chi2.ppf(1 - alpha / 2, df)), float(v * df / chi2.ppf(alpha / 2, df))]


def sd_ci_from_var(var: float | None, df: float) -> list[float] | None:
    """Square roots of :func:`chi2_var_ci`."""
    ci = chi2_var_ci(var, df)
    return None if ci is None else [math.sqrt(ci[0]), math.sqrt(ci[1])]


def satterthwaite_df(ss: Sequence[float], df: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """Effective df of ``sum w_T SS_T`` (independent ``SS_T ~ E[MS_T] chi2(df_T)``).

    ``(sum w SS)^2 / sum (w SS)^2 / df``; between the smallest df_T and sum df_T. When every SS is 0
    the plain sum of df is returned.
    """
    ss_a = np.asarray(ss, dtype=np.float64)
    df_a = np.asarray(df, dtype=np.float64)
    w = np.ones_like(ss_a) if weights is None else np.asarray(weights, dtype=np.float64)
    num = float(np.sum(w * ss_a)) ** 2
    den = float(np.sum((w * ss_a) ** 2 / df_a))
    return float(df_a.sum()) if den <= 0 else num / den


def crossed_terms(table: np.ndarray) -> list[tuple[tuple[int, ...], float, int]]:
    """``(axes, SS, df)`` of every ANOVA term of a balanced crossed table with one value per cell.

    Axes with a single level are ignored (they carry no variance).
    """
    from driftlab.drift.anova import anova_components

    y = np.asarray(table, dtype=np.float64)
    keep = [a for a in range(y.ndim) if y.shape[a] >= 2]
    if not keep:
        return []
    y2 = y.reshape([y.shape[a] for a in keep])
    res = anova_components(y2[..., None], [str(a) for a in keep])
    out = []
    for t in res["terms"]:
        axes = tuple(int(f) for f in t["factors"])
        out.append((axes, float(t["mean_square"]) * t["df"], int(t["df"])))
    return out


def crossed_sd_interval(table: np.ndarray, axis: int) -> dict:
    """Within-group SD of ``axis`` in a balanced crossed table (groups = cells of the other axes).

    The pooled within-group SS is the sum of the SS of every term containing ``axis``; its
    variance estimate ``V = sum SS_T / sum df_T`` gets Satterthwaite df and a chi-square interval.

    Returns:
        ``{"var", "df", "df_effective", "ci95"}`` (``ci95`` on the SD).
    """
    terms = [(ss, df) for axes, ss, df in crossed_terms(table) if axis in axes]
    if not terms:
        return {"var": None, "df": 0, "df_effective": None, "ci95": None}
    ss, df = zip(*terms)
    total_df = int(sum(df))
    var = float(sum(ss)) / total_df
    ci = mls_var_ci(ss, df, [1.0 / total_df] * len(ss))
    return {"var": var, "df": total_df, "df_effective": satterthwaite_df(ss, df),
            "ci95": None if ci is None else [math.sqrt(ci[0]), math.sqrt(ci[1])]}


def mls_var_ci(ss: Sequence[float], df: Sequence[float], weights: Sequence[float]) -> list[float] | None:
    """95% interval of ``theta = sum w_T E[SS_T]`` (w_T >= 0) from independent chi-square SS_T.

    Graybill-Wang modified large-sample interval: with ``V = sum w_T SS_T``, ``G_T = 1 -
    df_T/chi2_0.975(df_T)``, ``H_T = df_T/chi2_0.025(df_T) - 1``: ``[V - sqrt(sum (G_T w_T SS_T)^2),
    V + sqrt(sum (H_T w_T SS_T)^2)]``, lower bound clipped at 0. Exact (the chi-square interval)
    for one term; close to nominal for several (see tests/drift/test_intervals.py).
    """
    if not len(ss):
        return None
    from scipy.stats import chi2

    alpha = 1 - CI_LEVEL
    ss_a = np.asarray(ss, dtype=np.float64)
    df_a = np.asarray(df, dtype=np.float64)
    part = np.asarray(weights, dtype=np.float64) * ss_a
    g = 1 - df_a / chi2.ppf(1 - alpha / 2, df_a)
    h = df_a / chi2.ppf(alpha / 2, df_a) - 1
    v = float(part.sum())
    return [max(0.0, v - float(np.sqrt(np.sum((g * part) ** 2)))), v + float(np.sqrt(np.sum((h * part) ** 2)))]


def sd_interval_ratio(df: float) -> float:
    """Upper ÷ lower bound of the 95% chi-square interval on an SD with ``df`` degrees of freedom."""
    from scipy.stats import chi2

    alpha = 1 - CI_LEVEL
    return float(math.sqrt(chi2.ppf(1 - alpha / 2, df) / chi2.ppf(alpha / 2, df)))


def levels_to_tell(sd_value: float | None, floor: float | None, *,
                   max_levels: int = MAX_ADVICE_LEVELS) -> int | None:
    """Smallest number of levels L whose chi-square interval (df = L - 1) at the observed SD lies
    entirely on one side of ``floor``; None when undefined or more than ``max_levels`` are needed.

    The expected interval at the observed SD ``s`` with df = L - 1 is
    ``[s*sqrt(df/chi2_0.975), s*sqrt(df/chi2_0.025)]``; it excludes the floor once the upper bound
    is below it (s < floor) or the lower bound above it (s > floor).
    """
    if sd_value is None or floor is None or floor <= 0 or sd_value == floor:
        return None
    for levels in range(2, max_levels + 1):
        lo, hi = sd_ci_from_var(sd_value ** 2, levels - 1)
        if hi < floor or lo > floor:
            return levels
    return None


def levels_to_narrow(ratio_target: float = 2.0, *, max_levels: int = 1000) -> int:
    """Smallest L (df = L - 1) whose 95% SD interval spans at most ×``ratio_target``."""
    for levels in range(2, max_levels + 1):
        if sd_interval_ratio(levels - 1) <= ratio_target:
            return levels
    return max_levels


def plan_advice(levels: dict[str, int], *, target: float = 2.0) -> list[str]:
    """One line per varied seed source: how wide its SD interval will be with the planned levels.

    Planned df = L - 1 (the source's main effect; the interval is this wide when the source's own
    effect dominates its groups' spread): the 95% chi-square interval spans ×``sd_interval_ratio``.
    """
    k = levels_to_narrow(target)
    lines = []
    for name, n in levels.items():
        if n < 2:
            continue
        ratio_now = sd_interval_ratio(n - 1)
        tail = (f"{k} levels would narrow it to ×{target:g}" if ratio_now > target
                else f"within ×{target:g} already")
        lines.append(f"{name}: {n} levels — a 95% interval on its SD spans ×{ratio_now:.1f}; {tail}")
    return lines
