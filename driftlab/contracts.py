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

from driftlab.errors import BadInput


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


# -- how much travels as a task's parameters ---------------------------------------------------------------------
#: kfp.local hands a task its whole executor input (every parameter, JSON-encoded) as ONE command-line
#: argument, and Linux caps one argument at MAX_ARG_STRLEN = 128 KiB, its terminating NUL included.
MAX_TASK_ARGUMENT = 128 * 1024 - 1
#: The most select_best's ``tuning`` output (the tuning summary, JSON text) takes in a task's argument.
MAX_TUNING_TEXT = 12 * 1024
#: The most the tuned parameters (``best_params``, JSON text) take there.
MAX_PARAMS_TEXT = 3 * 1024
#: Rows of the top-k table (values, parameters, trial numbers) kept in the tuning summary at the least:
#: retrain-top-k needs its ``tuning.retrain_top_k`` configurations, the optimism figure a runner-up.
MIN_TOP_K_ROWS = 2
TOP_K_ROWS = ("top_k_values", "top_k_params", "top_k_trials")


class TooLargeForTask(BadInput):
    """A value that cannot travel as a pipeline-task parameter; the message names it and the fix."""


def escaped_size(value: Any) -> int:
    """Bytes ``value`` takes inside a task's executor input: ``json.dumps`` with ASCII escapes, as kfp.local
    writes it (a string parameter holding JSON text is escaped once more: each ``"`` becomes ``\\"``)."""
    return len(json.dumps(value))


def bounded_tuning_summary(summary: dict[str, Any], *, keep: int, limit: int = MAX_TUNING_TEXT) -> str:
    """The tuning summary as JSON text that takes at most ``limit`` bytes in a task's argument.

    The trial table (``trials``) never travels. Rows of the top-k table past the first
    ``max(keep, MIN_TOP_K_ROWS)`` are left out from the end until the text fits, and
    ``top_k_left_out`` counts them; ``stability`` and ``top_k_spread`` still describe all the
    top-k trials. Raises ``TooLargeForTask`` when the rows that must stay do not fit.
    """
    base = {k: v for k, v in summary.items() if k != "trials"}
    rows = len(base.get("top_k_values") or [])

    def text(n: int) -> str:
        cut = {**base, **{k: list(base[k])[:n] for k in TOP_K_ROWS if k in base}}
        if n < rows:
            cut["top_k_left_out"] = rows - n
        return json.dumps(cut, sort_keys=True, default=str)

    if escaped_size(text(rows)) <= limit:
        return text(rows)
    low, high = min(rows, max(keep, MIN_TOP_K_ROWS)), rows  # text(low) must fit; text(high) does not
    if escaped_size(text(low)) > limit:
        raise TooLargeForTask(
            f"tuning: the tuning summary takes {escaped_size(text(low)):,} bytes as a pipeline-task parameter even "
            f"with only {low} top-k row(s), more than its {limit:,}-byte share of the {MAX_TASK_ARGUMENT:,} bytes "
            "Linux allows one argument; tune fewer or shorter parameters (long categorical choices take room in "
            "every row), or lower tuning.retrain_top_k")
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if escaped_size(text(middle)) <= limit else (low, middle)
    return text(low)
