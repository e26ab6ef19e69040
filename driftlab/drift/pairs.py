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
``groupstats.CORRELATION_MAX_RUNS`` runs of a group (every pair among them) and the first
CORRELATION_MAX_GROUPS groups.

Each group's share of these sums is measured once from its arrays
(``driftlab.drift.groupstats``); a comparison adds its groups' shares, so it
needs no array itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from driftlab.drift.groupstats import Measured, pair_count as _pair_count
from driftlab.drift.runs import Run

LOSS_PART_TOLERANCE = 1e-6  # relative: loss curves "part" once they differ by more than this
CORRELATION_MAX_GROUPS = 64  # a mean of bounded values: 64 groups pin it down; the rest add only time
BATCH_GROUPS = 64  # groups whose loss curves are compared together (their shortest curve sets the length)


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

    def add_group(self, runs: Sequence[Run], measured: Measured | None = None) -> None:
        """Compare every pair of runs in one group (runs differing only in the source)."""
        self.add_groups([runs], measured)

    def add_groups(self, groups: Sequence[Sequence[Run]], measured: Measured | None = None) -> None:
        """Compare every pair inside each group, adding the groups' measured shares (``measured``:
        the analysis's :class:`~driftlab.drift.groupstats.Measured`; without it, measured here)."""
        measured = measured or Measured(self.task)
        buckets: dict[tuple, list[Sequence[Run]]] = {}
        for g in groups:
            if len(g) >= 2:
                buckets.setdefault((len(g), g[0].shape), []).append(g)
        for bucket in buckets.values():
            for start in range(0, len(bucket), BATCH_GROUPS):
                self._add_batch(bucket[start:start + BATCH_GROUPS], measured)

    def _add_batch(self, groups: Sequence[Sequence[Run]], measured: Measured) -> None:
        k = len(groups[0])
        npairs = _pair_count(k)
        self.groups += len(groups)
        self.pairs += npairs * len(groups)
        stats = [measured.get(g, corr=self.corr_groups + i < CORRELATION_MAX_GROUPS) for i, g in enumerate(groups)]
        # Summed over the batch as one array, like the batch itself once was: the same float sums.
        spread = np.array([s.sqdiff for s in stats])
        self.sqdiff_sum += float(spread.sum()) if k == 2 else float(np.sum(spread)) * npairs
        if self.task == "classification" and all(s.disagree is not None for s in stats):
            self.disagree_sum += float(np.sum(np.array([s.disagree for s in stats])))
        self.max_abs = max(self.max_abs, max(s.max_abs for s in stats))
        self.identical_pairs += identical_pairs(groups)
        for s in stats[:max(0, CORRELATION_MAX_GROUPS - self.corr_groups)]:
            self.corr_sum, self.corr_count = self.corr_sum + s.corr[0], self.corr_count + s.corr[1]
            self.corr_groups += 1
        for s in stats:  # each sum in the groups' order, as one loop over the groups added them
            if s.weights is not None:
                self.wdist_sq_sum += s.weights[0]
                self.wpairs += npairs
                self.wnorm_sum += s.weights[1]
                self.wnorm_count += k
        length = min(map(len, (r.loss for g in groups for r in g)))
        if length:
            epochs = parting_epochs(np.array([[r.loss[:length] for r in g] for g in groups], dtype=np.float64))
            parted = epochs[epochs > 0]
            self.parted_groups += int(parted.size)
            if parted.size:
                self.parting = int(parted.min()) if self.parting is None else min(self.parting, int(parted.min()))

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


def identical_pairs(groups: Sequence[Sequence[Run]]) -> int:
    """Pairs of runs inside the groups whose weights have the same digest (a run without one matches none)."""
    if len(groups[0]) == 2:
        return sum(1 for a, b in groups if a.weights_digest and a.weights_digest == b.weights_digest)
    total = 0
    for g in groups:
        digests = Counter(r.weights_digest for r in g if r.weights_digest)
        total += sum(_pair_count(m) for m in digests.values())
    return total


def compare(groups: Sequence[Sequence[Run]], task: str, measured: Measured | None = None) -> dict[str, object]:
    """Pairwise statistics over several groups (see module docstring for definitions)."""
    acc = PairStats(task)
    acc.add_groups(groups, measured)
    return acc.result()


def correlated_groups(groups: Sequence[Sequence[Run]]) -> list[Sequence[Run]]:
    """The groups whose correlations ``compare(groups)`` uses: the first CORRELATION_MAX_GROUPS it adds."""
    buckets: dict[tuple, list[Sequence[Run]]] = {}
    for g in groups:
        if len(g) >= 2:
            buckets.setdefault((len(g), g[0].shape), []).append(g)
    return [g for bucket in buckets.values() for g in bucket][:CORRELATION_MAX_GROUPS]
