"""Run records as the statistics need them: one light object per finished run.

Store records are dicts with NumPy arrays; this module converts each once
(class labels from probabilities, loss curve, eval metrics) so that a record
taking part in many comparisons is never decoded twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from driftlab.errors import DriftlabError
from driftlab.runs.predictions import predicted_classes

SEED_FIELDS = ("init_seed", "shuffle_seed", "split_seed")


class RecordError(DriftlabError, ValueError):
    """A run record that lacks what the statistics need."""


@dataclass(eq=False)
class Run:
    """One finished run: its design point, metrics and what comparisons need."""

    key: str
    profile: str
    init_seed: int
    shuffle_seed: int
    split_seed: int
    repeat: int
    deterministic: bool
    metrics: dict[str, float]
    loss: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray | None
    weights: np.ndarray | None
    weights_kind: str | None
    weights_digest: str | None
    fit_s: float | None
    n_eval: int
    fingerprint: dict[str, Any] = field(default_factory=dict)
    truth: np.ndarray | None = None  # the eval rows' true labels / targets (record ``eval_labels``)

    @property
    def seeds(self) -> tuple[int, int, int]:
        return (self.init_seed, self.shuffle_seed, self.split_seed)


def eval_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The finite ``eval_*`` metrics of a record, without the prefix."""
    out = {}
    for name, value in (record.get("metrics") or {}).items():
        if name.startswith("eval_") and value is not None and math.isfinite(float(value)):
            out[name[len("eval_"):]] = float(value)
    return out


def from_record(record: dict[str, Any], task: str) -> Run:
    """Convert a store record (see ``Store.load_runs``) into a :class:`Run`.

    Raises:
        RecordError: The record has no predictions (it names the run key).
    """
    pred = record.get("predictions")
    if pred is None:
        raise RecordError(f"run {record.get('key')}: no predictions stored; re-run it, or load runs "
                          "with arrays (Store.load_runs(..., with_arrays=True))")
    pred = np.asarray(pred)
    labels = predicted_classes(pred) if task == "classification" else None
    history = record.get("history") or {}
    timings = record.get("timings") or {}
    weights = record.get("weights")
    return Run(
        key=str(record.get("key")), profile=str(record["profile"]),
        init_seed=int(record["init_seed"]), shuffle_seed=int(record["shuffle_seed"]),
        split_seed=int(record["split_seed"]), repeat=int(record["repeat"]),
        deterministic=bool(record["deterministic"]), metrics=eval_metrics(record),
        loss=np.asarray(history.get("loss") or [], dtype=np.float64), predictions=pred, labels=labels,
        weights=None if weights is None else np.asarray(weights), weights_kind=record.get("weights_kind"),
        weights_digest=record.get("weights_digest"),
        fit_s=float(timings["fit_s"]) if timings.get("fit_s") is not None else None,
        n_eval=int(pred.shape[0]), fingerprint=record.get("fingerprint") or {},
        truth=None if record.get("eval_labels") is None else np.asarray(record["eval_labels"]))


def finished_runs(records: Iterable[dict[str, Any]], task: str) -> list[Run]:
    """Runs with status ``ok`` (diverged and failed runs are counted, never compared)."""
    return [from_record(r, task) for r in records if r.get("status") == "ok"]
