"""The study through Optuna's gRPC storage proxy: tune workers that hold no database URL.

``DRIFTLAB_STUDY_GRPC`` (``host:port`` or ``grpc://host:port``) names the proxy
(``python -m driftlab.tuning.proxy``, the ``study-proxy`` manifests component); every
study call then goes through it, as Optuna's ``GrpcStorageProxy`` makes it. Two things
Optuna's client lacks are added here, with calls the proxy carries:

* the budget: a trial is never created without a template (``NoFreeSlot``); slots are
  taken by ``claim`` with ``set_trial_state_values``, the proxy's compare-and-set;
* heartbeats: the proxy has none, so a running trial's worker writes the system
  attribute ``driftlab:heartbeat`` every ``tuning.heartbeat_seconds``, and a trial whose
  attribute has not changed for the grace (3 intervals), as seen by the watching
  worker's own clock, is stale: no clock of another machine is compared. It is then
  failed and its slot given back by ``budget.SlotKeepingRetry``, as with PostgreSQL.

Calls that find the proxy unreachable are retried by gRPC for a few seconds (a
restarting proxy); past that the tune task fails and is retried by the pipeline, and
the study resumes.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.storages import GrpcStorageProxy
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from driftlab import settings
from driftlab.errors import BadInput
from driftlab.storage.db import STUDY, DatabaseUnreachable, retry_window
from driftlab.tuning.slots import GRACE_HEARTBEATS, NoFreeSlot, StalePacer

log = logging.getLogger(__name__)

BEAT_ATTR = "driftlab:heartbeat"
GRPC_SCHEME = "grpc://"
_ADDRESS = re.compile(r"^(?P<host>[A-Za-z0-9.\-_]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})$")
#: gRPC's own retry of calls that found the proxy unavailable (a restarting Pod): 5 tries over ~8 s.
_SERVICE_CONFIG = json.dumps({"methodConfig": [{
    "name": [{"service": "optuna.StorageService"}],
    "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.5s", "maxBackoff": "4s", "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"]}}]})


def parse_address(value: str) -> tuple[str, int]:
    """``host:port`` or ``grpc://host:port`` → (host, port); anything else is ``BadInput`` naming the setting."""
    text = value.strip()
    if text.startswith(GRPC_SCHEME):
        text = text[len(GRPC_SCHEME):]
    match = _ADDRESS.match(text.rstrip("/"))
    if not match or not 0 < int(match["port"]) < 65536:
        raise BadInput(f"{settings.STUDY_GRPC.name}: '{value}' is not a gRPC proxy address; write host:port, "
                       "e.g. driftlab-study-proxy:13000 (the study-proxy Service), or unset it to use the database")
    return match["host"].strip("[]"), int(match["port"])


class BeatWatch:
    """Which RUNNING trials' heartbeat attribute stood still for longer than the grace, by this process's clock."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[object, float]] = {}

    def stale(self, running: list[FrozenTrial], grace_s: float) -> list[int]:
        now = time.monotonic()
        seen: dict[int, tuple[object, float]] = {}
        stale = []
        for trial in running:
            beat = trial.system_attrs.get(BEAT_ATTR)
            before = self._seen.get(trial._trial_id)
            if before is None or before[0] != beat:
                seen[trial._trial_id] = (beat, now)
                continue
            seen[trial._trial_id] = before
            if now - before[1] > grace_s:
                stale.append(trial._trial_id)
        self._seen = seen
        return stale


class SlotGrpcStorage(GrpcStorageProxy, BaseHeartbeat):
    """Optuna's gRPC proxy client with the budget's refusal and heartbeats (see the module docstring)."""

    def __init__(self, *, host: str, port: int, heartbeat_seconds: int,
                 stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None) -> None:
        self._heartbeat_seconds = heartbeat_seconds
        self._stale_callback = stale_callback
        self._pacer = StalePacer(heartbeat_seconds)
        self._watch = BeatWatch()
        self._watch_lock = threading.Lock()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(host=host, port=port)

    def _setup(self) -> None:
        import grpc
        from optuna.storages._grpc.auto_generated import api_pb2_grpc
        from optuna.storages._grpc.client import GrpcClientCache

        self._channel = grpc.insecure_channel(f"{self._host}:{self._port}", options=[
            ("grpc.max_receive_message_length", -1), ("grpc.enable_retries", 1),
            ("grpc.service_config", _SERVICE_CONFIG)])
        self._stub = api_pb2_grpc.StorageServiceStub(self._channel)
        self._cache = GrpcClientCache(self._stub)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is None:
            raise NoFreeSlot("every trial of the budget is taken")
        return super().create_new_trial(study_id, template_trial)

    def record_heartbeat(self, trial_id: int) -> None:
        import grpc

        try:
            self.set_trial_system_attr(trial_id, BEAT_ATTR, time.time())
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
            pass  # finished meanwhile (or failed as stale by a worker that lost sight of it)
        except grpc.RpcError as exc:
            log.warning("trial %d: heartbeat not recorded (%s); trying again in %ss", trial_id,
                        exc.code().name, self._heartbeat_seconds)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        if not self._pacer.due():
            return []
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        with self._watch_lock:
            return self._watch.stale(running, self._heartbeat_seconds * GRACE_HEARTBEATS)

    def get_heartbeat_interval(self) -> int:
        return self._heartbeat_seconds

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._stale_callback


def connect(target: str, *, heartbeat_seconds: int,
            stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None) -> SlotGrpcStorage:
    """The proxy at ``target`` (``host:port``), once it answers; waits up to ``DRIFTLAB_DB_RETRY_S``."""
    host, port = parse_address(target)
    storage = SlotGrpcStorage(host=host, port=port, heartbeat_seconds=heartbeat_seconds,
                              stale_callback=stale_callback)
    window = retry_window()
    try:
        storage.wait_server_ready(timeout=window)
    except ConnectionError:
        storage.close()
        raise DatabaseUnreachable(
            f"the {STUDY.noun} proxy at grpc://{host}:{port} ({settings.STUDY_GRPC.name}) did not answer for "
            f"{window:.0f} s; check that the study-proxy Deployment is ready, or unset {settings.STUDY_GRPC.name} "
            "to use the database directly", reason="no answer", what="opening the study storage",
            window=window) from None
    log.info("Optuna study storage: gRPC proxy grpc://%s:%d (heartbeat %ss)", host, port, heartbeat_seconds)
    return storage
