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

With ``DRIFTLAB_STUDY_GRPC`` set, the study goes through Optuna's gRPC storage
proxy instead (``grpc_storage``; the proxy is ``proxy``): the process then holds
no database URL for it.

Per trial, a worker costs what plain Optuna costs (``benchmarks/bench_tune.py``):
a slot is taken by one compare-and-set (``claim``; here ``claim_slot``, which
records the worker in the same transaction), and Optuna's stale-trial check,
which ``Study.optimize`` runs before every trial, looks at most once per
heartbeat interval (``StalePacer``), in one query.
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy as sa
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from driftlab import settings
from driftlab.config import ExperimentConfig
from driftlab.storage.db import (  # noqa: F401  (POOL_SIZE: re-exported, tests read it here)
    JOURNAL_SCHEME, POOL_SIZE, STUDY, database_url, engine_kwargs, local_path, normalize_url, retrying, safe_url)
from driftlab.tuning.budget import SlotKeepingRetry
from driftlab.tuning.commands import StorageRef
from driftlab.tuning.slots import GRACE_HEARTBEATS, NoFreeSlot, StalePacer  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

T = TypeVar("T")

def _utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stale_pacer = StalePacer(self.heartbeat_interval or 0)

    def claim_slot(self, trial_id: int, attrs: dict[str, Any]) -> bool:
        """Take the WAITING trial ``trial_id`` (RUNNING, started now) with user attributes ``attrs``, in one
        transaction; False when another worker took it first (see ``claim``).

        Safe to retry: when a lost reply hid a committed claim, the retry finds ``attrs`` on the trial.
        """
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        attempts = 0

        def call() -> bool:
            nonlocal attempts
            attempts += 1
            with _create_scoped_session(self.scoped_session) as session:
                taken = session.execute(
                    sa.update(models.TrialModel)
                    .where(models.TrialModel.trial_id == trial_id, models.TrialModel.state == TrialState.WAITING)
                    .values({models.TrialModel._datetime_start_utc: _utc_now()})
                    .values(state=TrialState.RUNNING)).rowcount
                if taken:
                    session.add_all([models.TrialUserAttributeModel(trial_id=trial_id, key=k, value_json=json.dumps(v))
                                     for k, v in attrs.items()])
                    return True
                if attempts == 1:
                    return False
                stored = dict(session.query(models.TrialUserAttributeModel.key, models.TrialUserAttributeModel.value_json)
                              .filter(models.TrialUserAttributeModel.trial_id == trial_id).all())
                return all(stored.get(k) == json.dumps(v) for k, v in attrs.items())

        return _study_retrying(self, call, "taking a slot")

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        if template_trial is None:
            raise NoFreeSlot("every trial of the budget is taken")
        return super()._create_new_trial(study_id, template_trial)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        if not self.stale_pacer.due():
            return []  # Study.optimize asks before every trial; once per heartbeat interval is enough
        return _study_retrying(self, lambda: self._stale_trial_ids(study_id), "looking for stale trials")

    def _stale_trial_ids(self, study_id: int) -> list[int]:
        """RUNNING trials silent for longer than the grace, in one query.

        Optuna skips RUNNING trials that never wrote a heartbeat (a worker killed
        between taking a slot and its first beat); they would hold their slot
        forever, so they count as stale once started longer ago than twice the grace.
        """
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        grace = _dt.timedelta(seconds=self.grace_period or 2 * (self.heartbeat_interval or 0))
        with _create_scoped_session(self.scoped_session, True) as session:
            db_now = session.execute(sa.func.now()).scalar().replace(tzinfo=None)
            rows = (session.query(models.TrialModel.trial_id, models.TrialModel._datetime_start_utc,
                                  models.TrialHeartbeatModel.heartbeat)
                    .outerjoin(models.TrialHeartbeatModel,
                               models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
                    .filter(models.TrialModel.study_id == study_id, models.TrialModel.state == TrialState.RUNNING)
                    .all())
        now = _utc_now()  # Optuna 5 stores datetime_start as naive UTC
        return [trial_id for trial_id, started, beat in rows
                if (beat is not None and db_now - beat > grace)
                or (beat is None and started is not None and now - started > 2 * grace)]


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
    """Optuna's JournalStorage, refusing trials without a slot; a claim costs one append to the file.

    Each append is a locked, fsynced write, the journal's whole cost. ``claim_slot`` appends
    only the compare-and-set; the worker's attributes are written with the trial's next
    write (its first parameter, or its end), in the same append, ahead of it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending_attrs: dict[int, dict[str, Any]] = {}

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is None:
            raise NoFreeSlot("every trial of the budget is taken")
        return super().create_new_trial(study_id, template_trial)

    def claim_slot(self, trial_id: int, attrs: dict[str, Any]) -> bool:
        """Take the WAITING trial ``trial_id`` for this worker; False when another worker took it first."""
        try:
            if not self.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return False
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        with self._thread_lock:
            self._pending_attrs[trial_id] = dict(attrs)  # ours now: safe to write with its next write
        return True

    def _write_log(self, op_code: int, extra_fields: dict[str, Any]) -> None:
        pending = self._pending_attrs.pop(extra_fields.get("trial_id"), None) if self._pending_attrs else None
        if not pending:
            return super()._write_log(op_code, extra_fields)
        from optuna.storages.journal._storage import JournalOperation

        worker_id = self._replay_result.worker_id
        self._backend.append_logs(
            [{"op_code": JournalOperation.SET_TRIAL_USER_ATTR, "worker_id": worker_id,
              "trial_id": extra_fields["trial_id"], "user_attr": {key: value}} for key, value in pending.items()]
            + [{"op_code": op_code, "worker_id": worker_id, **extra_fields}])

    def get_trial(self, trial_id: int) -> FrozenTrial:
        trial = super().get_trial(trial_id)
        pending = self._pending_attrs.get(trial_id)
        if pending:
            trial = copy.copy(trial)
            trial.user_attrs = {**trial.user_attrs, **pending}
        return trial


def journal_path(config: ExperimentConfig) -> Path:
    """The local default: Optuna's journal file under ``storage.local_dir`` (``db.STUDY``)."""
    return local_path(config.storage.local_dir, STUDY)


def storage_ref(config: ExperimentConfig) -> StorageRef:
    """Where driftlab's own study for ``config`` lives: the gRPC proxy in ``DRIFTLAB_STUDY_GRPC``, else the
    database in ``storage.url_env``, else the journal.

    The variable's value is always a database URL (the results store's), whatever it looks like.
    """
    proxy = settings.STUDY_GRPC.raw()
    if proxy:
        from driftlab.tuning.grpc_storage import parse_address

        host, port = parse_address(proxy)
        return StorageRef("grpc", f"{host}:{port}")
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
    if ref.kind == "grpc":
        from driftlab.tuning.grpc_storage import connect

        return connect(ref.target, heartbeat_seconds=config.tuning.heartbeat_seconds,
                       stale_callback=stale_callback or SlotKeepingRetry(config))
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
