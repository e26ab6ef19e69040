"""Warm workers lent across the tasks of a local run: the same results as fresh workers, nothing leaked.

Each "task" is a real process of its own (as kfp.local runs them) that makes an
``executor.Worker`` and trains one spec. Controls: without a depot every task starts
a new worker (another pid, not warm); a different ISA cap never gets the same worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from driftlab import settings
from driftlab.config import ProfileConfig
from driftlab.runs import depot

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TASK = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from driftlab.config import ProfileConfig
from driftlab.runs.executor import Worker
from support.factories import trainable_spec

profile = ProfileConfig.model_validate(json.loads(sys.argv[2]))
spec = trainable_spec(profile, experiment="depot", init_seed=int(sys.argv[3]),
                      hparams={"units": 16, "dropout": 0.2, "learning_rate": 0.003})
worker = Worker(profile)
print("LEASED " + json.dumps({"pid": worker.proc.pid, "warm": worker.warm}), flush=True)
if sys.argv[4] == "hang":
    time.sleep(600)
record = worker.run(spec)
worker.close()
print("RESULT " + json.dumps({"pid": worker.proc.pid, "warm": worker.warm, "status": record["status"],
                               "digest": record["weights_digest"]}), flush=True)
"""
DEFAULT = ProfileConfig(name="cpu-default")
CAPPED = ProfileConfig(name="cpu-sse41", isa="SSE41")


def _env(depot_path: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != settings.WORKER_DEPOT.name}
    if depot_path:
        env[settings.WORKER_DEPOT.name] = depot_path
    return env


def _task(depot_path: str | None, profile: ProfileConfig = DEFAULT, init_seed: int = 0) -> dict:
    proc = subprocess.run([sys.executable, "-c", TASK, str(ROOT / "tests"), profile.model_dump_json(),
                           str(init_seed), "train"], env=_env(depot_path), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [line] = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def test_tasks_of_one_run_train_on_the_same_warm_worker_and_get_a_fresh_workers_results(tmp_path):
    # Control: without a depot, each task starts its own worker.
    cold = [_task(None), _task(None, init_seed=1)]
    assert cold[0]["pid"] != cold[1]["pid"] and not any(r["warm"] for r in cold)

    with depot.serving(tmp_path, max_idle=2) as served:
        path = os.environ[settings.WORKER_DEPOT.name]
        first = _task(path)
        second = _task(path, init_seed=1)
        capped = _task(path, CAPPED)
        again = _task(path)
        assert first["pid"] == second["pid"] == again["pid"] and second["warm"] and again["warm"]
        assert capped["pid"] != first["pid"] and not capped["warm"], "another ISA cap gets its own worker"
        assert served.started == 2 and served.lent == 4
        pid = first["pid"]
        assert _alive(pid), "an idle worker waits for the next task"
    assert not _alive(pid), "the run's end closes its idle workers"
    assert not list(tmp_path.iterdir()), "the socket's folder is removed"

    # The lent worker computes what a fresh one does; the seed still changes the result.
    assert [first["digest"], second["digest"]] == [cold[0]["digest"], cold[1]["digest"]]
    assert first["digest"] == again["digest"] != second["digest"]
    assert first["status"] == "ok"


def test_a_task_that_dies_holding_a_worker_takes_the_worker_with_it(tmp_path):
    with depot.serving(tmp_path, max_idle=2) as served:
        path = os.environ[settings.WORKER_DEPOT.name]
        task = subprocess.Popen([sys.executable, "-c", TASK, str(ROOT / "tests"), DEFAULT.model_dump_json(), "0",
                                 "hang"], env=_env(path), stdout=subprocess.PIPE, text=True)
        leased = json.loads(task.stdout.readline().removeprefix("LEASED "))
        assert _alive(leased["pid"]), "control: the task holds a live worker"
        task.send_signal(signal.SIGKILL)
        task.wait()
        deadline = time.monotonic() + 15
        while _alive(leased["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(leased["pid"]), "a worker whose task died is killed, never lent in an unknown state"
        after = _task(path)
        assert after["pid"] != leased["pid"] and not after["warm"] and after["status"] == "ok"
        assert served.started == 2


def test_no_depot_or_an_unreachable_one_means_a_worker_of_ones_own(tmp_path, monkeypatch):
    monkeypatch.delenv(settings.WORKER_DEPOT.name, raising=False)
    assert depot.borrow({}) is None
    monkeypatch.setenv(settings.WORKER_DEPOT.name, str(tmp_path / "gone.sock"))
    assert depot.borrow({}) is None


def test_the_depot_lends_no_database_credential(tmp_path, monkeypatch):
    canary = "postgresql://u:canary-depot-pw@db/x"
    monkeypatch.setenv(settings.DB_URL.name, canary)
    monkeypatch.setenv("OTHER_URL", canary)
    monkeypatch.setenv("ORDINARY_VARIABLE", "seen")
    with depot.serving(tmp_path, max_idle=1):
        lease = depot.borrow({**os.environ, settings.PROFILE.name: "cpu-default"})
        try:
            environ = Path(f"/proc/{lease.pid}/environ").read_bytes()
        finally:
            lease.kill()
    assert b"ORDINARY_VARIABLE=seen" in environ, "control: the worker got the ordinary environment"
    assert b"canary-depot-pw" not in environ


def test_a_new_profiles_worker_replaces_idle_ones_past_the_limit(tmp_path):
    with depot.serving(tmp_path, max_idle=1) as served:
        path = os.environ[settings.WORKER_DEPOT.name]
        first = _task(path)
        assert _alive(first["pid"]), "control: idle, it waits for the next task"
        capped = _task(path, CAPPED)
        assert not _alive(first["pid"]), "starting another profile's worker closed the idle one (max_idle 1)"
        again = _task(path, CAPPED)
        assert again["pid"] == capped["pid"] and again["warm"]
        assert served.started == 2


def _wait_for(condition, seconds: float = 180.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_later_profiles_warm_one_at_a_time_after_the_first_and_their_tasks_find_them_warm(tmp_path):
    from driftlab.runs.executor import worker_env

    avx = ProfileConfig(name="cpu-avx", isa="AVX")
    fresh = _task(None, CAPPED)  # control: a worker of its own
    with depot.serving(tmp_path, max_idle=3) as served:
        path = os.environ[settings.WORKER_DEPOT.name]
        spans, start = {}, served._start

        def timed_start(env):  # when each worker's start began and when it was ready
            began = time.monotonic()
            warm = start(env)
            spans[env[settings.PROFILE.name]] = (began, time.monotonic())
            return warm

        served._start = timed_start
        served.prewarm(worker_env(DEFAULT))
        served.prewarm_in_turn([worker_env(CAPPED), worker_env(avx)])
        _wait_for(lambda: len(served._idle) == 3)
        order = sorted(spans, key=lambda name: spans[name][0])
        assert order == ["cpu-default", "cpu-sse41", "cpu-avx"], spans
        assert spans["cpu-default"][1] <= spans["cpu-sse41"][0], "the later profiles wait for the first to be ready"
        assert spans["cpu-sse41"][1] <= spans["cpu-avx"][0], "one later profile at a time"
        capped = _task(path, CAPPED)
        assert capped["warm"] and served.started == 3, "the task of a later profile found its worker warm"
    assert capped["digest"] == fresh["digest"], "a worker warmed ahead computes what a fresh one does"
