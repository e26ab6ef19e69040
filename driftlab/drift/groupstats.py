"""What the comparisons need from one group's arrays, measured once per group.

A group is a set of runs compared with each other (runs that differ in one source, a pair of
profiles at one seed point, the repeats of one point). Its :class:`GroupStats` hold the group's
share of every pairwise and per-example statistic: ``pairs.PairStats`` sums them over a
comparison's groups, ``churn.churn`` and ``churn.jordan`` combine them in the groups' order. So a
run's predictions, labels and weights are needed only while its groups are measured
(``driftlab.drift.stream``); what is kept is a few numbers per group, and for the per-example
statistics one small integer (classification) or float (regression) per evaluation row.
Definitions: the docstrings of ``pairs`` and ``churn``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from driftlab.drift.runs import Run

CORRELATION_MAX_RUNS = 32  # correlations use every pair among a group's first 32 runs
CHUNK_BYTES = 1 << 20  # float64 work arrays taken this much at a time (see _spread)


@dataclass(eq=False, slots=True)
class GroupStats:
    """One group's share of the comparison statistics (sums over the group's pairs)."""

    sqdiff: float  # k = 2: the mean squared prediction difference; k > 2: its mean over pairs (2 x mean var)
    max_abs: float  # largest |a - b| between two of the group's predictions
    disagree: float | None  # sum over pairs of the share of rows whose labels differ; None without labels
    weights: tuple[float, float] | None  # (sum over pairs of squared weight distances, sum of weight norms)
    corr: tuple[float, int] | None = None  # (sum, count) of pairwise correlations; None: not measured
    examples: bool = False  # churn and Jordan's check measured
    same: np.ndarray | None = None  # churn: per row, sum over classes of m_c (m_c - 1)
    row_var: np.ndarray | None = None  # churn without labels: per row variance of the mean prediction
    jordan: tuple[float, float, int] | None = None  # (observed SS, predicted SS, rows); None without true labels


def pair_count(k: int) -> int:
    return k * (k - 1) // 2


def group_key(group: Sequence[Run]) -> tuple[int, ...]:
    """The identity of a group's measurement: its runs in order. Nothing measured of two runs depends on
    their order (every sum has two terms, or counts), so a reversed pair is the same measurement."""
    if len(group) == 2:
        a, b = id(group[0]), id(group[1])
        return (a, b) if a < b else (b, a)
    return tuple(map(id, group))


def truth_labels(run: Run) -> np.ndarray | None:
    """The run's true eval labels as class indices; None without them or with another row count."""
    if run.truth is None or run.labels is None:
        return None
    t = np.asarray(run.truth)
    if t.ndim == 2 and t.shape[1] > 1:  # one-hot
        t = np.argmax(t, axis=1)
    t = t.reshape(-1)
    return t.astype(np.int64) if t.shape[0] == run.labels.shape[0] else None


def _row_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, the dot product of ``a``'s and ``b``'s rows; each row summed on its own, so that a group's
    number does not depend on which groups share its batch (``einsum`` may take another summation order,
    or BLAS, for another number of rows: the last digits of a report would then follow the core count)."""
    return np.multiply(a, b).sum(axis=-1)


def correlation_sums(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the sum and count of pairwise Pearson correlations; flat is (groups, k, m)."""
    x = flat[:, :CORRELATION_MAX_RUNS]
    centered = x - x.mean(axis=2, keepdims=True)
    norms = np.linalg.norm(centered, axis=2)
    total = np.zeros(x.shape[0])
    count = np.zeros(x.shape[0], dtype=np.int64)
    for i, j in itertools.combinations(range(x.shape[1]), 2):
        ok = (norms[:, i] > 0) & (norms[:, j] > 0)
        if ok.all():  # views, no copies
            total += _row_dots(centered[:, i], centered[:, j]) / (norms[:, i] * norms[:, j])
            count += 1
        elif ok.any():
            dots = _row_dots(centered[ok, i], centered[ok, j])
            total[ok] += dots / (norms[ok, i] * norms[ok, j])
            count[ok] += 1
        # A constant prediction has no correlation; two identical constants count as 1.
        const = ~ok
        if const.any():
            same = np.all(x[const, i] == x[const, j], axis=1)
            total[const] += same
            count[const] += same
    return total, count


def _compact(same: np.ndarray, k: int) -> np.ndarray:
    """``same`` (exact integers up to k(k-1)) in the smallest unsigned type that holds them."""
    top = k * (k - 1)
    dtype = np.uint8 if top <= 0xFF else np.uint16 if top <= 0xFFFF else np.uint32 if top <= 0xFFFFFFFF else np.uint64
    return same.astype(dtype)


def _weights(groups: Sequence[Sequence[Run]]) -> list[tuple[float, float] | None]:
    """Per group: squared weight distances over its pairs and its weight norms; None unless one kind and size."""
    out: list[tuple[float, float] | None] = [None] * len(groups)
    by_shape: dict[tuple, list[int]] = {}
    for i, g in enumerate(groups):
        if all(r.weights is not None for r in g) and len({r.weights_kind for r in g}) == 1 \
                and len({r.weights.shape for r in g}) == 1:
            by_shape.setdefault(g[0].weights.shape, []).append(i)
    k = len(groups[0])
    for idx in by_shape.values():
        w = np.array([[r.weights for r in groups[i]] for i in idx], dtype=np.float64)  # (groups, k, size)
        dist = np.sum(2 * np.var(w, axis=1, ddof=1), axis=1) * pair_count(k)
        norms = np.linalg.norm(w, axis=2).sum(axis=1)
        for j, i in enumerate(idx):
            out[i] = (float(dist[j]), float(norms[j]))
    return out


def _jordans(groups: Sequence[Sequence[Run]], labels: np.ndarray) -> list[tuple[float, float, int] | None]:
    """Per group, Jordan's check terms (observed SS, predicted SS, rows); ``labels`` is (groups, k, n).
    None for a group where a run lacks true labels of its row count."""
    known: dict[int, np.ndarray | None] = {}  # runs of a campaign share their eval labels' array

    def truth(r: Run) -> np.ndarray | None:
        if r.truth is None:
            return None
        if id(r.truth) not in known:
            known[id(r.truth)] = truth_labels(r)
        return known[id(r.truth)]

    truths = [[truth(r) for r in g] for g in groups]
    out: list[tuple[float, float, int] | None] = [None] * len(groups)
    ok = [i for i, t in enumerate(truths) if all(x is not None and x.shape[0] == labels.shape[2] for x in t)]
    if not ok:
        return out
    correct = (labels[ok] == np.array([truths[i] for i in ok])).astype(np.float64)  # (groups, k, n)
    n = correct.shape[2]
    acc = correct.mean(axis=2)
    observed = np.sum((acc - acc.mean(axis=1, keepdims=True)) ** 2, axis=1)
    predicted = np.sum((correct - correct.mean(axis=1, keepdims=True)) ** 2, axis=(1, 2)) / n ** 2
    for j, i in enumerate(ok):
        out[i] = (float(observed[j]), float(predicted[j]), n)
    return out


def _row_var(group: Sequence[Run]) -> np.ndarray:
    return np.var(np.array([np.asarray(r.predictions, dtype=np.float64).reshape(len(r.predictions), -1).mean(axis=1)
                            for r in group]), axis=0, ddof=1)


def _spread(groups: Sequence[Sequence[Run]], k: int, m: int, flat: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the ``sqdiff`` term and the largest |a - b| (float64, as the comparisons always were).

    Taken CHUNK_BYTES of differences (or of stacked predictions) at a time, so that they and their
    temporaries stay in the CPU's cache; each group's numbers do not depend on the chunking.
    """
    sqdiff, max_abs = np.zeros(len(groups)), np.zeros(len(groups))
    if not m:
        return sqdiff, max_abs
    step = max(1, CHUNK_BYTES // (8 * m * (1 if k == 2 else k)))
    diff = np.empty((min(step, len(groups)), m), dtype=np.float64) if k == 2 and flat is None else None
    for lo in range(0, len(groups), step):
        hi = min(len(groups), lo + step)
        if k == 2:
            if flat is not None:
                d = flat[lo:hi, 0] - flat[lo:hi, 1]
            else:  # no stacked copy: each pair's float64 difference in one pass
                d = diff[:hi - lo]
                for i, (a, b) in enumerate(groups[lo:hi]):
                    np.subtract(np.asarray(a.predictions).reshape(-1), np.asarray(b.predictions).reshape(-1),
                                out=d[i], dtype=np.float64)
            sqdiff[lo:hi] = _row_dots(d, d) / m
            max_abs[lo:hi] = np.max(np.abs(d), axis=1)
        else:
            part = flat[lo:hi]
            sqdiff[lo:hi] = np.mean(2 * np.var(part, axis=1, ddof=1), axis=1)
            max_abs[lo:hi] = np.max(part.max(axis=1) - part.min(axis=1), axis=1)
    return sqdiff, max_abs


def _same(labels: np.ndarray) -> np.ndarray:
    """Per group and row, the sum over classes of m_c (m_c - 1): ordered pairs of runs that agree; (groups, k, n)."""
    k = labels.shape[1]
    same = np.zeros(labels.shape[::2], dtype=np.float64)
    if pair_count(k) <= 16:  # few runs: count agreeing pairs
        for i, j in itertools.combinations(range(k), 2):
            same += 2 * (labels[:, i] == labels[:, j])
        return same
    for c in np.unique(labels):
        count = np.count_nonzero(labels == c, axis=1).astype(np.float64)
        same += count * (count - 1)
    return same


def measure(groups: Sequence[Sequence[Run]], task: str, *, examples: bool = False,
            corr: bool = False) -> list[GroupStats]:
    """The :class:`GroupStats` of groups of the same size whose runs have arrays of one shape.

    ``examples``: also what churn and Jordan's check need; ``corr``: also the correlations.
    """
    k = len(groups[0])
    runs = [r for g in groups for r in g]
    m = math.prod(runs[0].shape)
    flat = None
    if k > 2 or corr:
        flat = np.empty((len(runs), m), dtype=np.float64)
        for i, r in enumerate(runs):
            flat[i] = np.asarray(r.predictions).reshape(-1)
        flat = flat.reshape(len(groups), k, m)
    sqdiff, max_abs = _spread(groups, k, m, flat)
    disagree: Any = [None] * len(groups)
    same = None
    if task == "classification" and all(r.labels is not None for r in runs):
        labels = np.stack([r.labels for r in runs]).reshape(len(groups), k, -1)
        if examples or k > 2:
            same = _same(labels)
        if not labels.shape[2]:
            disagree = np.zeros(len(groups))
        elif k == 2:
            disagree = np.mean(labels[:, 0] != labels[:, 1], axis=1)
        else:
            disagree = np.mean(pair_count(k) - same / 2, axis=1)
    corrs = correlation_sums(flat) if corr else None
    weights = _weights(groups)
    jordans = _jordans(groups, labels) if examples and same is not None else None
    out = []
    for i, g in enumerate(groups):
        s = GroupStats(sqdiff=float(sqdiff[i]), max_abs=float(max_abs[i]),
                       disagree=None if disagree[i] is None else float(disagree[i]), weights=weights[i],
                       corr=None if corrs is None else (float(corrs[0][i]), int(corrs[1][i])), examples=examples)
        if examples and same is not None:
            s.same = _compact(same[i], k)
            s.jordan = jordans[i]
        elif examples:
            s.row_var = _row_var(g)
        out.append(s)
    return out


class Measured:
    """The :class:`GroupStats` of an analysis's groups, looked up by group.

    ``driftlab.drift.stream`` measures every group an analysis compares before it runs; a group
    not measured yet (a direct call of ``pairs.compare``, ``churn.churn``) is measured on first
    use, its arrays read through ``loader`` (a context manager over the group's runs) when they
    are stored. ``on_demand`` counts those.
    """

    def __init__(self, task: str, loader: Any = None):
        self.task = task
        self.loader = loader
        self.table: dict[tuple[int, ...], GroupStats] = {}
        self.on_demand = 0

    def put(self, group: Sequence[Run], stats: GroupStats) -> None:
        self.table[group_key(group)] = stats

    def get(self, group: Sequence[Run], *, examples: bool = False, corr: bool = False) -> GroupStats:
        s = self.table.get(group_key(group))
        if s is not None and (s.examples or not examples) and (s.corr is not None or not corr):
            return s
        self.on_demand += 1
        examples, corr = examples or bool(s and s.examples), corr or bool(s and s.corr is not None)
        if self.loader is not None and any(r.stored for r in group):
            with self.loader(group):
                s = measure([group], self.task, examples=examples, corr=corr)[0]
        else:
            s = measure([group], self.task, examples=examples, corr=corr)[0]
        self.put(group, s)
        return s
