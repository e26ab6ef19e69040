"""The shapes that cross process and KFP boundaries, typed, and converted in one place.

- ``RunRecord``: what one training run leaves (a worker → the executor → the store).
- ``StageSummary``: what a retrain stage returns (a KFP task output).
- ``NodeItem``: one retrain-across-nodes loop item (a KFP ParallelFor item).
- ``PreparedPlan``: what the prepare stage hands the pipeline.

They are ``TypedDict``s: plain dicts at run time, so they go through JSON, protobuf
``Struct`` and kfp.local unchanged, and checked shapes for a type checker and a reader.
KFP turns every number inside a ``dict``/``list`` parameter into a float and refuses
``None``: ``to_kfp`` drops ``None`` on the way out, the ``*_from_kfp`` functions restore
whole numbers on the way in. Tuned hyperparameters cross as typed JSON text instead
(``driftlab.config.params``).
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

import numpy as np


class RunRecord(TypedDict, total=False):
    key: str
    status: str  # "ok", "diverged" (both final) or "failed" (trained again on a re-run)
    error: str | None  # first line "Type: message", then the user's own frames (driftlab.runs.failures)
    task: str
    metrics: dict[str, float]  # eval_<metric> and val_<metric>
    history: dict[str, list[float]]
    init_digest: str
    weights_digest: str
    predictions: np.ndarray
    eval_labels: np.ndarray
    weights: np.ndarray
    weights_kind: str
    n_params: int
    timings: dict[str, Any]
    fingerprint: dict[str, Any]


class StageSummary(TypedDict, total=False):
    profile: str
    planned: int
    skipped: int  # already recorded before this stage ran
    trained: int
    failed: int
    seconds: float
    workers: int
    skipped_profile: str  # why the profile did not run here (a GPU pool locally, a single profile)


class NodeItem(TypedDict, total=False):
    profile: str
    best_params: str  # typed JSON text (driftlab.config.params.encode)
    kind: str
    node_selector: dict[str, str]
    tolerations: list[dict[str, str]]
    accelerator_type: str
    accelerator_count: int
    cpu_request: str
    memory_request: str
    tf32: bool
    shard_index: int
    shard_count: int
    runs: int


class PreparedPlan(TypedDict):
    study: str | None
    workers: list[int]
    reference: str
    profiles: list[str]
    skipped_profiles: list[dict[str, str]]
    planned_runs: int


STAGE_COUNTS = ("planned", "skipped", "trained", "failed", "workers")
#: Whole-number fields of a tuning summary, at any depth (``stability.k`` too).
TUNING_COUNTS = ("best_trial", "n_complete", "n_pruned", "n_failed", "n_unfinished", "budget", "k")
NODE_COUNTS = ("accelerator_count", "shard_index", "shard_count", "runs")


def to_kfp(value: Any) -> Any:
    """Drop ``None`` values, recursively: KFP (kfp.local at least) refuses ``None`` inside task outputs."""
    if isinstance(value, dict):
        return {k: to_kfp(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [to_kfp(v) for v in value if v is not None]
    return value


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _mapping(raw: dict[str, Any] | str) -> dict[str, Any]:
    # kfp.local hands a dict from outside a ParallelFor to a task inside it as JSON text.
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def node_item_from_kfp(raw: dict[str, Any] | str) -> NodeItem:
    """A loop item as it arrived in a task: its counts whole numbers again, shard fields defaulted."""
    item = _mapping(raw)
    for name in NODE_COUNTS:
        if name in item:
            item[name] = _whole(item[name])
    item.setdefault("shard_index", 0)
    item.setdefault("shard_count", 1)
    return NodeItem(**item)  # type: ignore[typeddict-item]


def stage_summary_from_kfp(raw: dict[str, Any] | str) -> StageSummary:
    """A retrain stage's summary as it arrived in a later task: counts as ints."""
    summary = _mapping(raw)
    for name in STAGE_COUNTS:
        if name in summary:
            summary[name] = _whole(summary[name])
    return StageSummary(**summary)  # type: ignore[typeddict-item]


def tuning_summary_from_kfp(raw: dict[str, Any] | str | None) -> dict[str, Any] | None:
    """The select_best summary as it arrived (JSON text, or a dict): its counts as ints; None if empty."""
    if isinstance(raw, str):
        raw = json.loads(raw) if raw.strip() else None
    if not raw:
        return None

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: _whole(v) if k in TUNING_COUNTS else fix(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    out = fix(raw)
    if "trials_per_worker" in out:
        out["trials_per_worker"] = [int(n) for n in out["trials_per_worker"]]
    return out
