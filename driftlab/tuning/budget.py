"""An exact global trial budget for many workers: the budget is a queue of slots.

Why not ``MaxTrialsCallback``: it stops a worker *after* a trial once enough
trials have finished, but W workers that each check "fewer than N finished"
at the same moment all start one more trial, so a study overshoots by up to
W - 1. Counting RUNNING trials too (check, then create) has the same race.

The scheme here is an atomic claim built from Optuna's own trial queue:

* ``top_up`` (run once by ``create_study``, before workers fan out) adds
  WAITING trials until COMPLETE + PRUNED + RUNNING + WAITING = budget. These
  are the slots.
* A worker only ever runs a popped slot. A WAITING trial is popped with a
  compare-and-set (an ``UPDATE ... WHERE state = 'WAITING'`` in PostgreSQL, an
  ordered log in the journal, Optuna's ``set_trial_state_values(RUNNING)``
  through the gRPC proxy; ``claim`` chooses which slot to try), so each slot is
  taken by exactly one worker. The storages refuse to create a trial without
  a template (``storage.NoFreeSlot``), so a worker never runs an extra trial:
  ``study.ask()`` either pops a slot or raises.
* A slot is given back only when a trial ends FAIL, by whoever moved it to
  FAIL (exactly one actor, again a compare-and-set): the worker whose
  objective raised (``replace_failed``) or the worker that found a dead
  worker's trial stale (``SlotKeepingRetry``). A stale trial is retried with
  its parameters up to ``tuning.max_retry`` times, then replaced by a fresh slot.

So COMPLETE + PRUNED can never exceed the budget, and reaches it unless
more trials fail than ``failure_limit`` allows. The slots are visible as
WAITING trials in optuna-dashboard and ``optuna trials``, with system
attributes ``driftlab:slot`` and (for replacements) ``driftlab:replaces``.

Nothing here imports ``tuning.storage`` (which imports this module for
``SlotKeepingRetry``: one direction, no cycle); the writes here retry a lost
database with ``storage.db.retrying``, like every other database call.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from driftlab.config import ExperimentConfig
from driftlab.storage.db import STUDY, retrying

log = logging.getLogger(__name__)

SLOT_ATTR = "driftlab:slot"
REPLACES_ATTR = "driftlab:replaces"
ERROR_ATTR = "error"
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
#: States that hold a slot.
OCCUPYING_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


@dataclass(frozen=True)
class Counts:
    complete: int
    pruned: int
    running: int
    waiting: int
    failed: int

    @property
    def counted(self) -> int:
        """Trials that count toward the budget: COMPLETE and PRUNED."""
        return self.complete + self.pruned

    @property
    def occupied(self) -> int:
        return self.complete + self.pruned + self.running + self.waiting


def counts(study: optuna.Study) -> Counts:
    """How many trials the study holds in each state (one read)."""
    by_state: dict[TrialState, int] = {}
    for trial in study.get_trials(deepcopy=False):
        by_state[trial.state] = by_state.get(trial.state, 0) + 1
    return Counts(*(by_state.get(s, 0) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                                                  TrialState.WAITING, TrialState.FAIL)))


def has_heartbeat(storage: optuna.storages.BaseStorage) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's ``fail_stale_trials`` (experimental in name only, it runs inside every optimize)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _study_url(study: optuna.Study) -> str | None:
    """The study's database URL (Optuna wraps an RDB storage in a cache); None for a journal."""
    storage = study._storage
    return getattr(getattr(storage, "_backend", storage), "url", None)


def _retrying(study: optuna.Study, attempt: Callable[[], None], what: str) -> None:
    retrying(attempt, what, url=_study_url(study), role=STUDY)


def effective_budget(config: ExperimentConfig) -> int:
    """``tuning.trials``, capped by the grid size for the grid sampler (a grid has no more points)."""
    budget = config.tuning.trials
    if config.tuning.sampler == "grid":
        from driftlab.tuning.search import grid_space

        size = 1
        for values in grid_space(config).values():
            size *= len(values)
        budget = min(budget, size)
    return budget


def failure_limit(budget: int) -> int:
    """How many failed trials get their slot back; later ones do not, so a study whose every
    trial raises ends (with a warning) instead of looping forever."""
    return max(budget, 3)


def _slot_template(*, replaces: int | None = None, retry_of: FrozenTrial | None = None) -> FrozenTrial:
    attrs: dict[str, Any] = {SLOT_ATTR: True}
    params: dict[str, Any] = {}
    distributions: dict[str, Any] = {}
    if retry_of is not None:
        # Same attribute names as Optuna's RetryHeartbeatStaleTrialCallback, so
        # RetryHeartbeatStaleTrialCallback.retried_trial_number() reads them.
        history = [*retry_of.system_attrs.get("retry_history", []), retry_of.number]
        attrs = {**retry_of.system_attrs, **attrs, "failed_trial": history[0], "retry_history": history}
        params, distributions = retry_of.params, retry_of.distributions
    if replaces is not None:
        attrs[REPLACES_ATTR] = replaces
    return optuna.trial.create_trial(state=TrialState.WAITING, params=params, distributions=distributions,
                                     system_attrs=attrs)


def add_replacement(study: optuna.Study, failed: FrozenTrial, *, retry: bool) -> bool:
    """Give back the slot of ``failed`` (now FAIL): its retry, or a fresh slot.

    Idempotent: a retry after a lost reply first checks whether the
    replacement already landed. Returns False when ``failure_limit`` is reached.
    """
    budget = study.user_attrs.get("budget")
    fails = counts(study).failed
    if budget is not None and fails > failure_limit(int(budget)):
        log.error("trial %d failed; %d trials failed in all, over the limit of %d: its slot is not "
                  "given back, the study will end short of its budget", failed.number, fails,
                  failure_limit(int(budget)))
        return False
    template = _slot_template(replaces=failed.number, retry_of=failed if retry else None)

    def attempt() -> None:
        if not any(t.system_attrs.get(REPLACES_ATTR) == failed.number
                   for t in study.get_trials(deepcopy=False)):
            study.add_trial(template)

    _retrying(study, attempt, f"giving back the slot of trial {failed.number}")
    return True


def top_up(study: optuna.Study, budget: int) -> int:
    """Add WAITING slots until the study holds ``budget`` occupied ones; returns how many were added.

    Run once, before workers fan out (a re-run with a larger budget extends
    the study). Each attempt recounts, so a retry never adds twice.
    """
    added = 0

    def attempt() -> None:
        nonlocal added
        missing = budget - counts(study).occupied
        for _ in range(max(0, missing)):
            study.add_trial(_slot_template())
            added += 1

    _retrying(study, attempt, "adding the budget's slots")
    if counts(study).occupied > budget:
        log.warning("study '%s' already holds more trials than the budget of %d (it was lowered); "
                    "the trials already queued will still run", study.study_name, budget)
    return added


class SlotKeepingRetry(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """The heartbeat-stale callback: retry the dead trial, and never lose its slot.

    Optuna's ``RetryHeartbeatStaleTrialCallback`` retries up to ``max_retry``
    times and then drops the trial; here the slot then comes back empty (fresh
    parameters), so the budget is still reached.
    """

    def __init__(self, config: ExperimentConfig) -> None:
        super().__init__(max_retry=config.tuning.max_retry)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        retries = len(trial.system_attrs.get("retry_history", [])) + 1
        retry = bool(trial.params) and (self._max_retry is None or retries <= self._max_retry)
        log.warning("trial %d: its worker stopped beating; %s", trial.number,
                    "retrying it with the same parameters" if retry else "giving its slot back")
        add_replacement(study, trial, retry=retry)


def replace_failed(study: optuna.Study, trial: FrozenTrial) -> None:
    """``study.optimize`` callback: a trial that raised gives its slot back (fresh parameters)."""
    if trial.state == TrialState.FAIL:
        add_replacement(study, trial, retry=False)


def reclaim_orphans(study: optuna.Study) -> None:
    """Fail trials left RUNNING by dead workers and give their slots back.

    With heartbeats (database storage) Optuna finds them by their silence.
    The journal file has no heartbeat: there, every RUNNING trial at prepare
    time belongs to a previous run (prepare runs before any worker starts).
    """
    storage = study._storage
    if has_heartbeat(storage):
        fail_stale_trials(study)
        return
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(trial._trial_id, ERROR_ATTR, "abandoned: its worker ended without "
                                    "finishing it; reclaimed when the study was prepared again")
        try:
            changed = storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            changed = False
        if changed:
            add_replacement(study, storage.get_trial(trial._trial_id), retry=False)
