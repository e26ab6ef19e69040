"""Where a study lives: PostgreSQL on a cluster, Optuna's journal file locally.

Both storages are Optuna's own classes with two additions (see ``budget``):
trials are only ever created from a template (the budget's slots), and, for
the database, every call survives a dropped connection or a restarting
server: it is retried with exponential backoff for up to
``DRIFTLAB_DB_RETRY_S`` (120 s, shared with the results store). The schema is
untouched, so optuna-dashboard and the ``optuna`` CLI read the study as it is.

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
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from driftlab.config import ExperimentConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long one storage call keeps retrying a lost database before giving up.
#: First and largest pause between retries (doubling, with jitter).
RETRY_FIRST_PAUSE_S = 0.2
RETRY_MAX_PAUSE_S = 5.0
#: Connection pool per worker process: main thread + heartbeat thread + slack.
POOL_SIZE = 2
POOL_MAX_OVERFLOW = 2
#: Grace before a silent trial is declared dead, in heartbeat intervals.
GRACE_HEARTBEATS = 3


class NoFreeSlot(Exception):
    """Raised instead of creating a trial beyond the budget (see ``budget``)."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is a lost connection rather than a real error."""
    import sqlalchemy.exc as sa_exc

    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
                             sa_exc.PendingRollbackError)):
            return True
        if type(seen).__module__.startswith("psycopg2") and type(seen).__name__ in (
                "OperationalError", "InterfaceError"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(exc: BaseException) -> str:
    root: BaseException = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(root).strip().splitlines()
    return f"{type(root).__name__}: {text[0] if text else ''}"


def with_db_retry(call: Callable[[], T], what: str, reset: Callable[[], None] | None = None) -> T:
    """Run ``call``; on a transient database error, retry with backoff for ``store.retry_window()``.

    Args:
        call: The storage call.
        what: Its name, for the log.
        reset: Run before each retry (drops a session left in a failed transaction).
    """
    from driftlab.storage.store import retry_window  # one window for results and studies: DRIFTLAB_DB_RETRY_S

    deadline = time.monotonic() + retry_window()
    pause = RETRY_FIRST_PAUSE_S
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:
            attempt += 1
            if not is_transient(exc) or time.monotonic() + pause > deadline:
                raise
            # The message comes from the driver, which never includes the password.
            log.warning("database call %s failed (%s); retry %d in %.1fs", what, _first_line(exc),
                        attempt, pause)
            time.sleep(pause * (0.5 + random.random() / 2))
            if reset is not None:
                reset()
            pause = min(pause * 2, RETRY_MAX_PAUSE_S)


def _retrying(name: str) -> Callable[..., Any]:
    base = getattr(RDBStorage, name)

    @functools.wraps(base)
    def method(self, *args, **kwargs):
        return with_db_retry(lambda: base(self, *args, **kwargs), name, self.scoped_session.remove)

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

    return with_db_retry(call, "set_trial_state_values", self.scoped_session.remove)


class ResilientRDBStorage(RDBStorage):
    """Optuna's RDBStorage, retrying lost connections and refusing trials without a slot."""

    set_trial_state_values = _retrying_state_change

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        if template_trial is None:
            raise NoFreeSlot("every trial of the budget is taken")
        return super()._create_new_trial(study_id, template_trial)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return with_db_retry(lambda: self._stale_trial_ids(study_id), "_get_stale_trial_ids",
                             self.scoped_session.remove)

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
# here: adding a slot is retried by ``budget.add_slot``, which first checks
# whether the attempt whose reply was lost did land.
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


def database_url(config: ExperimentConfig) -> str:
    """The study database URL from the environment variable the config names; '' means local."""
    return os.environ.get(config.storage.url_env, "").strip()


def journal_path(config: ExperimentConfig) -> Path:
    from driftlab.storage.store import local_dir

    return local_dir(config.storage.local_dir) / "optuna-journal.log"


def driver_url(url: str) -> str:
    """``postgresql://`` pinned to psycopg2, the driver driftlab ships (SQLAlchemy 2.1 would pick psycopg 3)."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg2://" + url[len(plain):]
    return url


def engine_kwargs_for(url: str) -> dict[str, Any]:
    """Pool settings: pre-ping (a dead pooled connection is replaced, not used), bounded size."""
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}
        return kwargs
    kwargs.update(pool_size=POOL_SIZE, max_overflow=POOL_MAX_OVERFLOW, pool_timeout=30, pool_recycle=1800)
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30,
                                  "keepalives_interval": 10, "keepalives_count": 3}
    return kwargs


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
    from driftlab.storage.store import safe_url
    from driftlab.tuning.budget import SlotKeepingRetry

    url = driver_url(database_url(config))
    if url:
        heartbeat = config.tuning.heartbeat_seconds
        callback = stale_callback or SlotKeepingRetry(config)
        log.info("Optuna study storage: %s (heartbeat %ss)", safe_url(url), heartbeat)
        return with_db_retry(lambda: ResilientRDBStorage(
            url, engine_kwargs=engine_kwargs_for(url), heartbeat_interval=heartbeat,
            grace_period=heartbeat * GRACE_HEARTBEATS, heartbeat_stale_trial_callback=callback),
            "connect")
    path = journal_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("Optuna study storage: journal file %s", path)
    return SlotJournalStorage(JournalFileBackend(str(path)))


def has_heartbeat(storage: optuna.storages.BaseStorage) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's ``fail_stale_trials`` (experimental in name only, it runs inside every optimize)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
