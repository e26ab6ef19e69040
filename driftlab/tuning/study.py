"""Study lifecycle: created once before workers fan out, then W workers share it.

``create_study`` (called by ``stages.prepare``) creates or loads the study,
reclaims what dead workers of a previous run left, and tops the slot queue
up to the budget (see ``budget``). A re-run with the same campaign therefore
resumes: finished trials stay, only missing slots are added.

``run_worker`` runs slots until none is left (``run_slots``; each slot is taken by
``claim.SlotClaimer``, one compare-and-set, and the study's counts are read only when
no slot is free). With heartbeats (database storage, gRPC proxy) a worker that
finds no free slot while trials still run keeps watching them (``fail_stale_trials`` every heartbeat interval) so that a
trial of a killed worker is retried by a live one; the pipeline's next step
waits for every worker anyway, so the watch costs no wall-clock time.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import optuna

from driftlab.errors import DriftlabError
from driftlab.config import ExperimentConfig
from driftlab.tuning import budget as slots
from driftlab.tuning.claim import SlotClaimer, SlotStudy, worker_attrs
from driftlab.tuning.search import make_pruner, make_sampler
from driftlab.tuning.budget import fail_stale_trials, has_heartbeat
from driftlab.tuning.storage import NoFreeSlot, storage_for

log = logging.getLogger(__name__)

Objective = Callable[[optuna.Trial], float]
#: Longest error text kept on a failed trial.
MAX_ERROR_CHARS = 2000


class TuningError(DriftlabError, RuntimeError):
    """A study that cannot be used as asked; the message says what to do."""


def study_name(config: ExperimentConfig, campaign: str) -> str:
    """The study's name: one study per experiment and campaign."""
    return f"driftlab.{config.name}.{campaign}"


def create_study(config: ExperimentConfig, campaign: str) -> str:
    """Create the study, or resume it: reclaim dead trials and add the missing slots.

    Args:
        config: The experiment (search space, direction, budget).
        campaign: Campaign name; with the experiment name it names the study.

    Returns:
        The study name.
    """
    name = study_name(config, campaign)
    storage = storage_for(config)
    study = optuna.create_study(storage=storage, study_name=name, direction=config.direction,
                                load_if_exists=True)
    stored = study.direction.name.lower()
    if stored != config.direction:
        raise TuningError(f"study '{name}' exists with direction {stored}, but the experiment now asks to "
                          f"{config.direction}; use a new campaign name for a changed objective")
    budget = slots.effective_budget(config)
    for key, value in {"experiment": config.name, "metric": f"val_{config.metric}", "budget": budget,
                       "sampler": config.tuning.sampler, "pruner": config.tuning.pruner}.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    slots.reclaim_orphans(study)
    added = slots.top_up(study, budget)
    log.info("study %s: budget %d, %d slot(s) added, %s", name, budget, added, slots.counts(study))
    return name


def load_study(config: ExperimentConfig, campaign: str, worker_index: int = 0) -> SlotStudy:
    """Load the study worker ``worker_index`` optimizes; a clear error if ``create_study`` never ran.

    Its ``ask`` takes a slot (``claim``): worker ``worker_index``'s lane of ``tuning.workers``,
    recording the worker, host and process on the trial.
    """
    name = study_name(config, campaign)
    storage = storage_for(config)
    claimer = SlotClaimer(worker_index, config.tuning.workers, worker_attrs(worker_index))
    try:
        return SlotStudy(study_name=name, storage=storage, claimer=claimer,
                         sampler=make_sampler(config, worker_index), pruner=make_pruner(config))
    except KeyError:
        raise TuningError(f"study '{name}' does not exist; the prepare stage creates it "
                          "(run the pipeline, or call driftlab.tuning.create_study first)") from None


def guarded(objective: Objective) -> Objective:
    """Wrap ``objective`` so that a trial that raises records why (who ran it is recorded by the claim)."""

    def run(trial: optuna.Trial) -> float:
        try:
            return objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr(slots.ERROR_ATTR, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])
            raise

    return run


def run_worker(config: ExperimentConfig, campaign: str, worker_index: int, objective: Objective, *,
               max_trials: int | None = None, poll_seconds: float | None = None) -> int:
    """Run the study's free slots until the global budget is met.

    Args:
        config: The experiment.
        campaign: Campaign name (selects the study).
        worker_index: This worker's index; seeds its sampler.
        objective: The trial function; exceptions make the trial FAIL (recorded
            in its ``error`` user attribute) and the study goes on.
        max_trials: Stop after this many trials here (a worker with a time slice).
        poll_seconds: Pause between checks while only others' trials run;
            default: the heartbeat interval.

    Returns:
        The number of trials this worker ran.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(config, campaign, worker_index)
    poll = poll_seconds if poll_seconds is not None else float(config.tuning.heartbeat_seconds)
    return run_slots(study, guarded(objective), slots.effective_budget(config), max_trials=max_trials,
                     poll_seconds=poll)


def run_slots(study: optuna.Study, objective: Objective, budget: int, *, max_trials: int | None,
              poll_seconds: float) -> int:
    """``run_worker``'s loop on an open study: run free slots, then watch others' trials until the budget is met.

    A trial that may have failed (it raised, was pruned or returned no finite value) is read back
    once, and gives its slot back if it is FAIL; a trial that returned a value costs no read.
    """
    watch = has_heartbeat(study._storage)
    ran = 0
    last: dict[str, Any] = {}

    def tracked(trial: optuna.Trial) -> float:
        last.update(trial_id=trial._trial_id, clean=False)
        value = objective(trial)
        last["clean"] = isinstance(value, (int, float)) and math.isfinite(value)
        return value

    while max_trials is None or ran < max_trials:
        last.clear()
        try:
            study.optimize(tracked, n_trials=1, catch=(Exception,))
        except NoFreeSlot:
            pass
        else:
            ran += 1
            if not last.get("clean", True):
                slots.replace_failed(study, study._storage.get_trial(last["trial_id"]))
            continue
        state = slots.counts(study)
        if state.waiting:
            continue  # a slot came back (a retry) after our pop found none
        if state.counted >= budget:
            break
        if not state.running:
            log.warning("study %s ends at %d of %d trials: %d failed and no slot is left (see the trials' "
                        "'error' attribute)", study.study_name, state.counted, budget, state.failed)
            break
        if not watch:
            break  # no heartbeat to tell a dead worker from a slow one: the re-run reclaims it
        time.sleep(poll_seconds)
        fail_stale_trials(study)
    return ran


def trial_row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One row of the trial table."""
    seconds = None
    if trial.datetime_start and trial.datetime_complete:
        seconds = round((trial.datetime_complete - trial.datetime_start).total_seconds(), 3)
    return {"number": trial.number, "state": trial.state.name, "value": trial.value, "params": trial.params,
            "seconds": seconds, "worker": trial.user_attrs.get("worker"),
            "error": trial.user_attrs.get(slots.ERROR_ATTR),
            "retry_of": trial.system_attrs.get("failed_trial"),
            "replaces": trial.system_attrs.get(slots.REPLACES_ATTR),
            "last_step": max(trial.intermediate_values) if trial.intermediate_values else None}
