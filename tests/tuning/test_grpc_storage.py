"""The gRPC proxy option without a proxy: its address, its heartbeat watch, how it is shown, its refusals."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState, create_trial

from driftlab import settings, tuning
from driftlab.config import load_config_text
from driftlab.errors import BadInput
from driftlab.tuning import grpc_storage, proxy
from driftlab.tuning.grpc_storage import BEAT_ATTR, BeatWatch, parse_address
from driftlab.tuning.storage import storage_ref
from support.tuning import experiment_text


@pytest.mark.parametrize("value, expected", [("study-proxy:13000", ("study-proxy", 13000)),
                                             ("grpc://10.0.0.7:1", ("10.0.0.7", 1)),
                                             (" grpc://[::1]:65535/ ", ("::1", 65535))])
def test_proxy_addresses_people_write_are_read(value, expected):
    assert parse_address(value) == expected


@pytest.mark.parametrize("value", ["study-proxy", "postgresql://u:pw@db/x", "host:0", "host:65536", "a b:1", ""])
def test_anything_else_is_refused_naming_the_setting_and_the_form(value):
    with pytest.raises(BadInput, match=f"{settings.STUDY_GRPC.name}: .* write host:port, e.g. "):
        parse_address(value)


def _running(trial_id: int, beat: float | None):
    trial = create_trial(state=TrialState.RUNNING, system_attrs={} if beat is None else {BEAT_ATTR: beat})
    trial._trial_id = trial_id
    return trial


def test_a_heartbeat_that_stands_still_past_the_grace_is_stale_and_a_beating_one_is_not(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(grpc_storage.time, "monotonic", lambda: now[0])
    watch = BeatWatch()
    for step in range(5):  # trial 1 beats on, trial 2 stopped at 1.0, trial 3 never beat
        assert watch.stale([_running(1, float(step)), _running(2, 1.0), _running(3, None)], grace_s=3.0) == []
        now[0] += 0.7
    now[0] += 0.5  # 3.3 s since trial 2's value (and trial 3's absence) was first seen
    assert watch.stale([_running(1, 9.0), _running(2, 1.0), _running(3, None)], grace_s=3.0) == [2, 3]


def test_a_trial_seen_for_the_first_time_is_never_stale_at_once():
    assert BeatWatch().stale([_running(1, 0.0)], grace_s=0.0) == []


def test_the_study_behind_a_proxy_is_shown_and_no_command_is_offered(monkeypatch):
    config = load_config_text(experiment_text(3), "experiment")
    monkeypatch.setenv(settings.STUDY_GRPC.name, "grpc://study-proxy:13000")
    ref = storage_ref(config)
    assert (ref.kind, ref.shown) == ("grpc", "grpc://study-proxy:13000")
    assert tuning.study_commands(ref, "s") == {}
    monkeypatch.setenv(settings.STUDY_GRPC.name, "study-proxy")
    with pytest.raises(BadInput, match=settings.STUDY_GRPC.name):
        storage_ref(config)
    monkeypatch.delenv(settings.STUDY_GRPC.name)
    assert storage_ref(config).kind != "grpc"  # control: unset, the database or the journal


def test_the_client_never_creates_a_trial_without_a_slot():
    storage = grpc_storage.SlotGrpcStorage(host="127.0.0.1", port=9, heartbeat_seconds=1, stale_callback=None)
    try:
        with pytest.raises(tuning.NoFreeSlot):
            storage.create_new_trial(1)  # refused before any call reaches a proxy
    finally:
        storage.close()


def test_proxy_without_a_database_url_says_what_to_set(monkeypatch, capsys):
    monkeypatch.delenv(settings.DB_URL.name, raising=False)
    assert proxy.main(["--port", "1"]) == 2
    assert f"{settings.DB_URL.name} is not set" in capsys.readouterr().err
    monkeypatch.setenv(settings.DB_URL.name, "postgresql://u@h/db")
    assert proxy.main(["--threads", "0"]) == 2
    assert "--threads: 0 is not a positive whole number" in capsys.readouterr().err
