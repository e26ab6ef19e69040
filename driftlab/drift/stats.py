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
