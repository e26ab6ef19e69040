"""Comparisons between runs that differ in one thing: predictions, weights, loss curves.

Inside a group of k runs every pair is compared. Averages over all pairs are
computed from per-example counts and variances (exact, linear in k) instead
of looping over the k(k-1)/2 pairs, so a group of a thousand seeds costs what
a thousand runs cost:

- disagreement: mean over examples of ``1 - sum_c m_c(m_c-1) / (k(k-1))``, where
  ``m_c`` runs predict class c — the share of pairs whose labels differ;
- RMS difference: ``sqrt(mean over pairs of mean (a-b)^2) = sqrt(2 * mean s^2)``;
- max-abs difference: the largest ``max - min`` across the group;
- identical weights: ``sum_d m_d(m_d-1) / (k(k-1))`` over weight digests;
- weight distance: ``sqrt(2 * sum_dims s^2)`` (RMS pairwise L2) over the mean weight norm;
- first parting epoch: the first epoch where ``max - min`` of the loss curves
  exceeds LOSS_PART_TOLERANCE times the largest loss (for positive losses this
  equals the earliest epoch at which any pair parts).

Prediction correlation has no such shortcut; it uses at most
CORRELATION_MAX_RUNS runs of a group (every pair among them) and the first
CORRELATION_MAX_GROUPS groups.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from driftlab.drift.runs import Run

LOSS_PART_TOLERANCE = 1e-6  # relative: loss curves "part" once they differ by more than this
CORRELATION_MAX_RUNS = 32
CORRELATION_MAX_GROUPS = 64  # a mean of bounded values: 64 groups pin it down; the rest add only time
BATCH_GROUPS = 64  # groups stacked into one array: bounds memory at 64 x k x predictions


def _pair_count(k: int) -> int:
    return k * (k - 1) // 2


def label_disagreement(labels: np.ndarray) -> float:
    """Sum over groups of the mean share of pairs whose labels differ; labels is (groups, k, n) or (k, n)."""
    labels = labels[None] if labels.ndim == 2 else labels
    _, k, n = labels.shape
    if not n:
        return 0.0
    if k == 2:
        return float(np.sum(np.mean(labels[:, 0] != labels[:, 1], axis=1)))
    same = np.zeros(labels.shape[::2], dtype=np.float64)
    for c in np.unique(labels):
        m = np.count_nonzero(labels == c, axis=1).astype(np.float64)
        same += m * (m - 1) / 2
    return float(np.sum(np.mean(_pair_count(k) - same, axis=1)))


def parting_epochs(curves: np.ndarray, rel_tol: float = LOSS_PART_TOLERANCE) -> np.ndarray:
    """First epoch (1-based; 0 = never) at which each group's curves spread; curves is (groups, k, epochs)."""
    if curves.shape[2] == 0:
        return np.zeros(curves.shape[0], dtype=np.int64)
    hi, lo = curves.max(axis=1), curves.min(axis=1)
    scale = np.maximum(np.maximum(np.abs(hi), np.abs(lo)), 1e-12)
    parted = (hi - lo) > rel_tol * scale
    return np.where(parted.any(axis=1), parted.argmax(axis=1) + 1, 0)


def first_parting_epoch(curves: Sequence[np.ndarray], rel_tol: float = LOSS_PART_TOLERANCE) -> int | None:
    """First epoch (1-based) at which the curves spread by more than rel_tol, or None."""
    length = min((len(c) for c in curves), default=0)
    if length == 0 or len(curves) < 2:
        return None
    epoch = int(parting_epochs(np.stack([np.asarray(c[:length], dtype=np.float64) for c in curves])[None], rel_tol)[0])
    return epoch or None


def _correlation_sums(flat: np.ndarray) -> tuple[float, int]:
    """Sum and count of pairwise Pearson correlations; flat is (groups, k, m)."""
    x = flat[:, :CORRELATION_MAX_RUNS]
    centered = x - x.mean(axis=2, keepdims=True)
    norms = np.linalg.norm(centered, axis=2)
    total, count = 0.0, 0
    for i, j in itertools.combinations(range(x.shape[1]), 2):
        ok = (norms[:, i] > 0) & (norms[:, j] > 0)
        if ok.any():
            dots = np.einsum("gm,gm->g", centered[ok, i], centered[ok, j])
            total += float(np.sum(dots / (norms[ok, i] * norms[ok, j])))
            count += int(ok.sum())
        # A constant prediction has no correlation; two identical constants count as 1.
        const = ~ok
        if const.any():
            same = np.all(x[const, i] == x[const, j], axis=1)
            total, count = total + float(same.sum()), count + int(same.sum())
    return total, count


@dataclass
class PairStats:
    """Accumulates pairwise comparisons over groups; :meth:`result` gives the averages."""

    task: str
    pairs: int = 0
    disagree_sum: float = 0.0
    sqdiff_sum: float = 0.0
    max_abs: float = 0.0
    identical_pairs: int = 0
    corr_sum: float = 0.0
    corr_count: int = 0
    corr_groups: int = 0
    wdist_sq_sum: float = 0.0
    wnorm_sum: float = 0.0
    wnorm_count: int = 0
    wpairs: int = 0
    parting: int | None = None
    parted_groups: int = 0
    groups: int = 0

    def add_group(self, runs: Sequence[Run]) -> None:
        """Compare every pair of runs in one group (runs differing only in the source)."""
        self.add_groups([runs])

    def add_groups(self, groups: Sequence[Sequence[Run]]) -> None:
        """Compare every pair inside each group; groups of equal size are processed together."""
        buckets: dict[tuple, list[Sequence[Run]]] = {}
        for g in groups:
            if len(g) >= 2:
                buckets.setdefault((len(g), g[0].predictions.shape), []).append(g)
        for bucket in buckets.values():
            for start in range(0, len(bucket), BATCH_GROUPS):
                self._add_batch(bucket[start:start + BATCH_GROUPS])

    def _add_batch(self, groups: Sequence[Sequence[Run]]) -> None:
        k = len(groups[0])
        npairs = _pair_count(k)
        self.groups += len(groups)
        self.pairs += npairs * len(groups)
        flat = np.array([[r.predictions.reshape(-1) for r in g] for g in groups], dtype=np.float64)
        if flat.shape[2] and k == 2:  # the common case, without the general variance machinery
            diff = flat[:, 0] - flat[:, 1]
            self.sqdiff_sum += float(np.einsum("gm,gm->", diff, diff)) / flat.shape[2]
            self.max_abs = max(self.max_abs, float(np.max(np.abs(diff))))
        elif flat.shape[2]:
            var = np.var(flat, axis=1, ddof=1)
            self.sqdiff_sum += float(np.sum(np.mean(2 * var, axis=1))) * npairs
            self.max_abs = max(self.max_abs, float(np.max(flat.max(axis=1) - flat.min(axis=1))))
        if self.task == "classification" and groups[0][0].labels is not None:
            self.disagree_sum += label_disagreement(np.array([[r.labels for r in g] for g in groups]))
        for g in groups:
            digests = Counter(r.weights_digest for r in g if r.weights_digest)
            self.identical_pairs += sum(_pair_count(m) for m in digests.values())
        if self.corr_groups < CORRELATION_MAX_GROUPS:
            s, c = _correlation_sums(flat[:CORRELATION_MAX_GROUPS - self.corr_groups])
            self.corr_sum, self.corr_count = self.corr_sum + s, self.corr_count + c
            self.corr_groups += min(len(groups), CORRELATION_MAX_GROUPS - self.corr_groups)
        self._add_weights(groups)
        length = min(len(r.loss) for g in groups for r in g)
        if length:
            epochs = parting_epochs(np.array([[r.loss[:length] for r in g] for g in groups], dtype=np.float64))
            parted = epochs[epochs > 0]
            self.parted_groups += int(parted.size)
            if parted.size:
                self.parting = int(parted.min()) if self.parting is None else min(self.parting, int(parted.min()))

    def _add_weights(self, groups: Sequence[Sequence[Run]]) -> None:
        usable = [g for g in groups if all(r.weights is not None for r in g) and len({r.weights_kind for r in g}) == 1
                  and len({r.weights.shape for r in g}) == 1]
        by_shape: dict[tuple, list[Sequence[Run]]] = {}
        for g in usable:  # distances only between vectors of the same kind and size
            by_shape.setdefault(g[0].weights.shape, []).append(g)
        for same in by_shape.values():
            w = np.array([[r.weights for r in g] for g in same], dtype=np.float64)
            k = w.shape[1]
            self.wdist_sq_sum += float(np.sum(2 * np.var(w, axis=1, ddof=1))) * _pair_count(k)
            self.wpairs += _pair_count(k) * len(same)
            self.wnorm_sum += float(np.linalg.norm(w, axis=2).sum())
            self.wnorm_count += k * len(same)

    def result(self) -> dict[str, object]:
        """Averages over all pairs; an empty dict when no group had two runs."""
        if not self.pairs:
            return {}
        rms = float(np.sqrt(self.sqdiff_sum / self.pairs))
        wdist = None
        if self.wpairs and self.wnorm_count and self.wnorm_sum > 0:
            wdist = float(np.sqrt(self.wdist_sq_sum / self.wpairs) / (self.wnorm_sum / self.wnorm_count))
        disagreement = self.disagree_sum / self.pairs if self.task == "classification" else rms
        return {
            "pairs": self.pairs,
            "disagreement": float(disagreement),
            "rms_diff": rms,
            "max_abs_diff": float(self.max_abs),
            "correlation": self.corr_sum / self.corr_count if self.corr_count else None,
            "identical_share": self.identical_pairs / self.pairs,
            "weight_distance": wdist,
            "first_parting_epoch": self.parting,
            "parted_share": self.parted_groups / self.groups if self.groups else None,
        }


def compare(groups: Sequence[Sequence[Run]], task: str) -> dict[str, object]:
    """Pairwise statistics over several groups (see module docstring for definitions)."""
    acc = PairStats(task)
    acc.add_groups(groups)
    return acc.result()
