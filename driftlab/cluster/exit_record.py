"""What the pipeline's exit handler records: how a cluster run ended.

On a cluster nothing else writes an execution row (``driftlab run`` does so
locally), so the exit task records one per KFP run, failed runs included:
the run's final state is the one thing a failed run can still tell the store.
"""

from __future__ import annotations

from typing import Any

from driftlab import stages

# KFP's final task states -> driftlab_executions.status (as `driftlab run` writes it).
STATES = {"SUCCEEDED": "succeeded", "FAILED": "failed", "CANCELED": "canceled", "CANCELLED": "canceled",
          "SKIPPED": "skipped"}


def execution_status(state: str) -> str:
    """Map a KFP final state to a driftlab execution status (unknown states count as failed).

    Args:
        state: ``PipelineTaskFinalStatus.state``, e.g. ``SUCCEEDED`` or ``FAILED``.

    Returns:
        ``succeeded``, ``failed``, ``canceled`` or ``skipped``.
    """
    return STATES.get(str(state).upper(), "failed")


def record_outcome(config_text: str, campaign: str, final_status: dict[str, Any]) -> dict[str, Any]:
    """Record one execution row with the run's final state, on a cluster.

    Locally ``driftlab run`` records the execution itself (it knows when it
    started), so here nothing is written and the reason is returned.

    Args:
        config_text: The experiment file's text.
        campaign: Campaign name.
        final_status: ``PipelineTaskFinalStatus`` as a dict: ``state``,
            ``pipeline_job_resource_name``, ``error`` (``code``, ``message``).

    Returns:
        What was recorded: ``recorded`` (bool), ``status``, ``execution_id`` and ``run``.
    """
    status = execution_status(final_status.get("state", ""))
    run = str(final_status.get("pipeline_job_resource_name") or "")
    if stages.is_local():
        return {"recorded": False, "status": status, "run": run, "reason": "driftlab run records local executions"}
    from driftlab.storage.store import Store

    config = stages.load(config_text)
    name, digest, canonical = stages.config_record(config_text)
    store = Store.from_config(config)
    execution = store.start_execution(name, campaign, digest, canonical, where="cluster")
    store.finish_execution(execution, status)
    return {"recorded": True, "status": status, "run": run, "execution_id": execution}
