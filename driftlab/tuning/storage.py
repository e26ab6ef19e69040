"""Where a study lives: PostgreSQL on a cluster, Optuna's journal file locally.

Both storages are Optuna's own classes with two additions (see ``budget``):
trials are only ever created from a template (the budget's slots), and, for
the database, every call survives a dropped connection or a restarting
server: it is retried with exponential backoff for up to
``DRIFTLAB_DB_RETRY_S`` (120 s). The schema is untouched, so optuna-dashboard
and the ``optuna`` CLI read the study as it is.

The URL (``DRIFTLAB_DB_URL``, the results store's; else the journal file),
its masking, the engine settings, what counts as a lost connection and the
retry loop are ``storage.db``'s, the same as the results store's.

Local default, measured (``benchmarks/bench_tune.py``): Optuna's journal
file takes concurrent worker processes without "database is locked" (it
appends under a file lock) and costs less per trial than SQLite; it has no
heartbeats, so a dead local worker's trial is reclaimed when the study is
next prepared (``budget.reclaim_orphans``) rather than while it runs.
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from driftlab.config import ExperimentConfig
from driftlab.storage.db import (  # noqa: F401  (POOL_SIZE: re-exported, tests read it here)
    JOURNAL_SCHEME, POOL_SIZE, STUDY, database_url, engine_kwargs, local_path, normalize_url, retrying, safe_url)
from driftlab.tuning.budget import SlotKeepingRetry
from driftlab.tuning.commands import StorageRef

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Grace before a silent trial is declared dead, in heartbeat intervals.
GRACE_HEARTBEATS = 3


class NoFreeSlot(Exception):
    """Raised instead of creating a trial beyond the budget (see ``budget``)."""


def _study_retrying(storage: RDBStorage, call: Callable[[], T], what: str) -> T:
    """``db.retrying`` for a call on ``storage``, dropping its failed session before each retry."""
    return retrying(call, what, url=storage.url, role=STUDY, reset=storage.scoped_session.remove)


def _retrying(name: str) -> Callable[..., Any]:
    base = getattr(RDBStorage, name)

    @functools.wraps(base)
    def method(self, *args, **kwargs):
        return _study_retrying(self, lambda: base(self, *args, **kwargs), f"calling {name}")

    return method


def _retrying_state_change(self, trial_id: int, state: TrialState, values=None) -> bool:
    """``set_trial_state_values`` made safe to retry.

    If the first attempt committed but its reply was lost, the retry sees a
    finished trial (or one already RUNNING); when the stored state is what we
    asked for, that is success, not an error.
    """
    attempts = 0

    def call() -> bool:
        nonlocal attempts
        attempts += 1
        try:
            return RDBStorage.set_trial_state_values(self, trial_id, state, values)
        except optuna.exceptions.UpdateFinishedTrialError:
            if attempts > 1 and RDBStorage.get_trial(self, trial_id).state == state:
                return True
            raise

    return _study_retrying(self, call, "calling set_trial_state_values")


class ResilientRDBStorage(RDBStorage):
    """Optuna's RDBStorage, retrying lost connections and refusing trials without a slot."""

    set_trial_state_values = _retrying_state_change

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        if template_trial is None:
            raise NoFreeSlot("every trial of the budget is taken")
        return super()._create_new_trial(study_id, template_trial)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return _study_retrying(self, lambda: self._stale_trial_ids(study_id), "looking for stale trials")

    def _stale_trial_ids(self, study_id: int) -> list[int]:
        # Optuna skips RUNNING trials that never wrote a heartbeat (a worker
        # killed between taking a slot and its first beat); they would hold
        # their slot forever, so they count as stale once older than the grace.
        stale = RDBStorage._get_stale_trial_ids(self, study_id)
        limit = _dt.timedelta(seconds=(self.grace_period or 2 * (self.heartbeat_interval or 0)) * 2)
        now = _dt.datetime.now()
        for trial in RDBStorage.get_all_trials(self, study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            if trial._trial_id in stale or trial.datetime_start is None:
                continue
            if now - trial.datetime_start > limit and not self._has_heartbeat(trial._trial_id):
                stale.append(trial._trial_id)
        return stale

    def _has_heartbeat(self, trial_id: int) -> bool:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session) as session:
            return session.query(models.TrialHeartbeatModel).filter(
                models.TrialHeartbeatModel.trial_id == trial_id).first() is not None


# Every call a worker makes retries a lost connection. create_new_trial is not
# here: adding a slot is retried by ``budget.top_up`` / ``budget.add_replacement``, each of which
# first checks whether the attempt whose reply was lost did land.
for _name in ("get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
              "get_study_user_attrs", "get_study_system_attrs", "get_all_studies", "set_study_user_attr",
              "set_study_system_attr", "get_trial", "get_trial_id_from_study_id_trial_number",
              "get_trial_number_from_id", "get_trial_param", "get_all_trials", "get_n_trials",
              "get_best_trial", "set_trial_param", "set_trial_intermediate_value", "set_trial_user_attr",
              "set_trial_system_attr", "record_heartbeat",
              # the private calls Optuna's _CachedStorage makes on its backend
              "_get_trials", "_get_best_trial_id", "_set_trial_param"):
    setattr(ResilientRDBStorage, _name, _retrying(_name))


class SlotJournalStorage(JournalStorage):
    """Optuna's JournalStorage, refusing trials without a slot."""

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is None:
            raise NoFreeSlot("every trial of the budget is taken")
        return super().create_new_trial(study_id, template_trial)


def journal_path(config: ExperimentConfig) -> Path:
    """The local default: Optuna's journal file under ``storage.local_dir`` (``db.STUDY``)."""
    return local_path(config.storage.local_dir, STUDY)


def storage_ref(config: ExperimentConfig) -> StorageRef:
    """Where driftlab's own study for ``config`` lives: the database in ``storage.url_env``, else the journal.

    The variable's value is always a database URL (the results store's), whatever it looks like.
    """
    url = database_url(config.storage.url_env, config.storage.local_dir, role=STUDY)
    if url.startswith(JOURNAL_SCHEME):
        return StorageRef("journal", url[len(JOURNAL_SCHEME):])
    return StorageRef("rdb", normalize_url(url))


def storage_for(config: ExperimentConfig, *, stale_callback: Callable[..., None] | None = None
                ) -> optuna.storages.BaseStorage:
    """The study storage for ``config``: the database in ``storage.url_env``, else a journal file.

    Args:
        config: The experiment; ``tuning.heartbeat_seconds`` sets the heartbeat.
        stale_callback: Called for each trial found dead by heartbeat; defaults to
            ``budget.SlotKeepingRetry`` (retry, and never lose the slot).

    Returns:
        A storage whose study the ``optuna`` CLI and dashboard read unchanged.
    """
    ref = storage_ref(config)
    if ref.kind == "rdb":
        url = ref.target
        heartbeat = config.tuning.heartbeat_seconds
        callback = stale_callback or SlotKeepingRetry(config)
        log.info("Optuna study storage: %s (heartbeat %ss)", safe_url(url), heartbeat)
        return retrying(lambda: ResilientRDBStorage(
            url, engine_kwargs=engine_kwargs(url), heartbeat_interval=heartbeat,
            grace_period=heartbeat * GRACE_HEARTBEATS, heartbeat_stale_trial_callback=callback),
            "opening the study storage", url=url, role=STUDY)
    log.info("Optuna study storage: journal file %s", ref.target)
    return SlotJournalStorage(JournalFileBackend(ref.target))
