"""Variance components: the share of total variance each source explains.

Estimator (factorial plans): the classical ANOVA / expected-mean-squares
method for a balanced, fully crossed random-effects design. Each varied
factor (init, shuffle, split seeds, hardware profile) is a random effect;
every interaction among them is a random effect too; repeats within a cell
are the residual. For a subset S of factors, with ``c_S = r * prod(L_f, f not
in S)`` (r repeats, L_f levels):

    E[MS_S] = sigma2_residual + sum over T containing S of c_T * sigma2_T

solved from the highest interaction down. The raw estimates are unbiased;
negative ones (sampling noise around a zero component) are reported raw and
truncated to zero for the shares. With one repeat per cell the residual is
not separable from the highest interaction and is reported together with it.

One-at-a-time plans do not cross the factors, so interactions cannot be
separated: each source's variance is its pooled within-group variance (runs
differing only in that source), and shares are taken of their sum.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator, Sequence

import numpy as np

SEP = "×"
ROUND_OFF = 1e-10  # relative to the largest mean square: smaller values are float round-off, set to 0


def _subsets(k: int) -> list[tuple[int, ...]]:
    return [s for size in range(1, k + 1) for s in itertools.combinations(range(k), size)]


def anova_components(y: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Random-effects variance components of a balanced crossed design.

    Args:
        y: Array of shape ``(L_1, ..., L_k, r)``: one axis per factor, the last axis repeats.
        names: The k factor names.

    Returns:
        ``{"terms": [{name, factors, df, mean_square, variance_raw, variance}], "residual": {...},
        "residual_separable": bool}``.
    """
    y = np.asarray(y, dtype=np.float64)
    batch = anova_batch(y[None], names)
    terms = [{**t, **{f: float(t[f][0]) for f in ("mean_square", "variance_raw", "variance")}}
             for t in batch["terms"]]
    res = batch["residual"]
    return {"terms": terms, "residual": {"df": res["df"], "mean_square": float(res["mean_square"][0]),
                                         "variance": float(res["variance"][0])},
            "residual_separable": batch["residual_separable"]}


def anova_batch(y: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """``anova_components`` of B tables at once: ``y`` is ``(B, L_1, ..., L_k, r)``, and each term's
    ``mean_square``, ``variance_raw`` and ``variance`` (and the residual's) are arrays of B values."""
    k = y.ndim - 2
    if k != len(names):
        raise ValueError(f"y has {k} factor axes but {len(names)} names were given")
    levels = y.shape[1:k + 1]
    r = y.shape[-1]
    cell_mean = y.mean(axis=-1)
    factor_axes = tuple(range(1, k + 1))
    means: dict[tuple[int, ...], np.ndarray] = {(): cell_mean.mean(axis=factor_axes, keepdims=True)}
    for s in _subsets(k):
        others = tuple(1 + a for a in range(k) if a not in s)
        means[s] = cell_mean.mean(axis=others, keepdims=True) if others else cell_mean

    def coeff(t: tuple[int, ...]) -> float:
        return float(r * np.prod([levels[a] for a in range(k) if a not in t]))

    terms: dict[tuple[int, ...], dict[str, Any]] = {}
    for s in _subsets(k):
        effect = sum(((-1) ** (len(s) - len(t))) * means[t]
                     for size in range(len(s) + 1) for t in itertools.combinations(s, size))
        df = int(np.prod([levels[a] - 1 for a in s]))
        ss = np.sum(effect ** 2, axis=factor_axes) * coeff(s)  # each effect value stands for coeff(s) cells' repeats
        terms[s] = {"name": SEP.join(names[a] for a in s), "factors": [names[a] for a in s], "df": df,
                    "mean_square": ss / df if df else np.zeros(len(y))}
    df_e = int(np.prod(levels)) * (r - 1)
    ms_e = (np.sum((y - cell_mean[..., None]) ** 2, axis=factor_axes + (k + 1,)) / df_e if df_e
            else np.zeros(len(y)))
    zero = ROUND_OFF * np.max([ms_e] + [t["mean_square"] for t in terms.values()], axis=0)
    ms_e = np.where(ms_e < zero, 0.0, ms_e)
    for t in terms.values():
        t["mean_square"] = np.where(t["mean_square"] < zero, 0.0, t["mean_square"])
    for s in sorted(terms, key=len, reverse=True):
        above = sum((coeff(t) * terms[t]["variance_raw"] for t in terms if len(t) > len(s) and set(s) <= set(t)),
                    np.zeros(len(y)))
        raw = (terms[s]["mean_square"] - ms_e - above) / coeff(s)
        terms[s]["variance_raw"] = np.where(np.abs(raw) < zero, 0.0, raw)
    out_terms = []
    for s in _subsets(k):
        t = terms[s]
        t["variance"] = np.maximum(t["variance_raw"], 0.0)
        out_terms.append(t)
    return {"terms": out_terms, "residual": {"df": df_e, "mean_square": ms_e, "variance": ms_e},
            "residual_separable": r >= 2}


def shares(variances: dict[str, float]) -> dict[str, float | None]:
    """Each variance over their sum; None for every entry when the sum is zero."""
    total = sum(v for v in variances.values() if v is not None)
    return {k: (v / total if total > 0 and v is not None else None) for k, v in variances.items()}


SHARE_BOOTSTRAP = 500  # parametric bootstrap draws for share intervals
SHARE_SEED = 0  # fixed: the same records always give the same intervals
MIN_SHARE_LEVELS = 3  # a main effect with fewer levels gets no share


SIMULATE_CHUNK = 25  # simulated tables summed at once: their noise is drawn whole, their sum a chunk at a time


def simulated_chunks(res: dict[str, Any], shape: Sequence[int], r: int, rng: np.random.Generator,
                     n: int) -> Iterator[np.ndarray]:
    """``n`` tables of shape ``(*shape, r)`` drawn from the fitted random-effects model (truncated
    components), SIMULATE_CHUNK at a time: arrays of shape ``(chunk, *shape, r)``.

    The draws come in the order a single ``(n, *shape, r)`` array would take them (each term for all
    tables, then the residual), so the tables are those of that array; but only the terms' noise
    (each smaller than a table, times n) and SIMULATE_CHUNK tables are held at once.
    """
    k = len(shape)
    terms = []
    for t, axes in zip(res["terms"], _subsets(k)):
        if t["variance"] > 0:
            size = [n] + [shape[a] if a in axes else 1 for a in range(k)] + [1]
            terms.append(rng.normal(0.0, np.sqrt(t["variance"]), size))
    residual_sd = np.sqrt(res["residual"]["variance"]) if res["residual"]["variance"] > 0 else None
    for lo in range(0, n, SIMULATE_CHUNK):
        hi = min(n, lo + SIMULATE_CHUNK)
        y = np.zeros((hi - lo, *shape, r))
        for noise in terms:
            y = y + noise[lo:hi]
        if residual_sd is not None:  # the residual is drawn last: a chunk at a time is the same stream
            y = y + rng.normal(0.0, residual_sd, y.shape)
        yield y


def percentile_ci(draws: np.ndarray) -> list[float]:
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return [float(lo), float(hi)]
