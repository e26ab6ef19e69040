"""Run records as the statistics need them: one light object per finished run.

Store records are dicts with NumPy arrays; this module converts each once
(class labels from probabilities, loss curve, eval metrics) so that a record
taking part in many comparisons is never decoded twice. A record read without
its arrays (``Store.iter_runs``: ``predictions_stored`` instead of
``predictions``) gives a *stored* run: scalars only, its arrays attached while
the groups it belongs to are measured (``driftlab.drift.stream``) and released
after; its ``shape`` and ``n_eval`` are known once it has been attached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

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
    shape: tuple[int, ...] | None = None  # the predictions' shape (a stored run's: once first attached)
    stored: bool = False  # arrays read from the results store when needed (attach, release)
    row_se: dict[str, float | None] | None = None  # the regression floor's SE per metric, once measured
    seeds: tuple[int, int, int] = field(init=False, repr=False)  # (init, shuffle, split): read millions of times

    def __post_init__(self) -> None:
        if self.shape is None and self.predictions is not None:
            self.shape = tuple(np.shape(self.predictions))
        self.seeds = (self.init_seed, self.shuffle_seed, self.split_seed)

    def attach(self, arrays: Mapping[str, Any], task: str) -> None:
        """Give a stored run its arrays (``predictions``, ``eval_labels``, ``weights``), as ``from_record`` would."""
        pred = arrays.get("predictions")
        if pred is None:
            raise RecordError(f"run {self.key}: its predictions are no longer stored (re-recorded meanwhile?); "
                              "aggregate again")
        pred = np.asarray(pred)
        weights, truth = arrays.get("weights"), arrays.get("eval_labels")
        self.shape, self.n_eval = tuple(pred.shape), int(pred.shape[0])
        self.predictions = pred
        self.labels = predicted_classes(pred) if task == "classification" else None
        self.weights = None if weights is None else np.asarray(weights)
        self.truth = None if truth is None else np.asarray(truth)

    def release(self) -> None:
        """Drop a stored run's arrays (its scalars stay)."""
        if self.stored:
            self.predictions = self.labels = self.weights = self.truth = None


def eval_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The finite ``eval_*`` metrics of a record, without the prefix."""
    out = {}
    for name, value in (record.get("metrics") or {}).items():
        if name.startswith("eval_") and value is not None and math.isfinite(float(value)):
            out[name[len("eval_"):]] = float(value)
    return out


def from_record(record: dict[str, Any], task: str) -> Run:
    """Convert a store record (see ``Store.load_runs``; ``Store.iter_runs`` gives a stored run) into a :class:`Run`.

    Raises:
        RecordError: The record has no predictions (it names the run key).
    """
    pred = record.get("predictions")
    if pred is None and not record.get("predictions_stored"):
        raise RecordError(f"run {record.get('key')}: no predictions stored; re-run it, or load runs "
                          "with arrays (Store.load_runs(..., with_arrays=True))")
    history = record.get("history") or {}
    timings = record.get("timings") or {}
    common = dict(
        key=str(record.get("key")), profile=str(record["profile"]),
        init_seed=int(record["init_seed"]), shuffle_seed=int(record["shuffle_seed"]),
        split_seed=int(record["split_seed"]), repeat=int(record["repeat"]),
        deterministic=bool(record["deterministic"]), metrics=eval_metrics(record),
        loss=np.asarray(history.get("loss") or [], dtype=np.float64), weights_kind=record.get("weights_kind"),
        weights_digest=record.get("weights_digest"),
        fit_s=float(timings["fit_s"]) if timings.get("fit_s") is not None else None,
        fingerprint=record.get("fingerprint") or {})
    if pred is None:  # read without its arrays
        return Run(**common, predictions=None, labels=None, weights=None, n_eval=0, stored=True)
    pred = np.asarray(pred)
    weights = record.get("weights")
    return Run(**common, predictions=pred, labels=predicted_classes(pred) if task == "classification" else None,
               weights=None if weights is None else np.asarray(weights), n_eval=int(pred.shape[0]),
               truth=None if record.get("eval_labels") is None else np.asarray(record["eval_labels"]))


def finished_runs(records: Iterable[dict[str, Any]], task: str) -> list[Run]:
    """Runs with status ``ok`` (diverged and failed runs are counted, never compared)."""
    return [from_record(r, task) for r in records if r.get("status") == "ok"]
