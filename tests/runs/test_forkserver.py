"""Workers forked from a process that imported TensorFlow once compute what fresh worker processes do."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from driftlab import settings
from driftlab.config import ProfileConfig
from driftlab.runs import depot, forkserver
from driftlab.runs.executor import Worker, worker_env
from support.factories import trainable_spec

pytestmark = pytest.mark.slow

# Two caps keep the test short; the quickstart's 64 runs (cpu-default, SSE4.1, AVX) were compared by hand
# (BENCHMARKS.md, "one TensorFlow import per local run").
PROFILES = [ProfileConfig(name="cpu-default"), ProfileConfig(name="cpu-sse41", isa="SSE41")]


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _gone(pid: int, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if forkserver._gone_code(pid) is not None:
            return True
        time.sleep(0.05)
    return False


def _digests(worker: Worker, profile: ProfileConfig) -> list[str]:
    return [worker.run(trainable_spec(profile, deterministic=det))["weights_digest"] for det in (True, False)]


def test_forked_workers_train_what_fresh_processes_do_under_every_isa_cap(tmp_path, monkeypatch):
    monkeypatch.delenv(settings.WORKER_DEPOT.name, raising=False)
    fresh = {}
    for profile in PROFILES:
        worker = Worker(profile)  # no depot: a process of its own, TensorFlow imported with the profile's knobs
        try:
            assert _parent(worker.proc.pid) == os.getpid()
            fresh[profile.name] = _digests(worker, profile)
        finally:
            worker.close()
    # Control: the ISA caps change the weights bitwise, so a fork that ignored its cap would be caught.
    assert fresh["cpu-default"] != fresh["cpu-sse41"]

    with depot.serving(tmp_path, max_idle=len(PROFILES)) as served:
        forked, parents = {}, set()
        for profile in PROFILES:
            worker = Worker(profile)
            try:
                parents.add(_parent(worker.proc.pid))
                forked[profile.name] = _digests(worker, profile)
            finally:
                worker.close()
        servers = [s for s in served._servers.values() if s is not None]
        assert len(servers) == 1 and servers[0].alive, "one TensorFlow import served every ISA cap"
        assert parents == {servers[0].proc.pid}, "each worker was forked by the fork server"
    assert forked == fresh


def test_forked_workers_report_their_exit_codes_and_die_with_their_fork_server(tmp_path):
    env = worker_env(PROFILES[0])
    server = forkserver.ForkServer(env)
    try:
        closing, killed, orphan = server.spawn(env), server.spawn(env), server.spawn(env)
        for proc in (closing, killed, orphan):
            assert b'"ready"' in proc.stdout.readline() and proc.poll() is None
        closing.stdin.close()
        assert closing.wait(timeout=30) == 0, "stdin closed: the worker exits cleanly"
        killed.kill()
        assert killed.wait(timeout=30) == -signal.SIGKILL
        assert orphan.poll() is None, "control: the third is still serving"
    finally:
        server.close()
    assert _gone(orphan.pid), "a worker does not outlive its fork server"
    assert orphan.wait(timeout=5) == -signal.SIGTERM


def test_a_dead_fork_server_is_replaced_and_the_switch_turns_forking_off(tmp_path, monkeypatch):
    monkeypatch.delenv(settings.WORKER_DEPOT.name, raising=False)
    profile = PROFILES[0]
    with depot.serving(tmp_path, max_idle=0) as served:
        first = Worker(profile)
        first.close()
        [server] = served._servers.values()
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        second = Worker(profile)
        try:
            assert second.run(trainable_spec(profile))["status"] == "ok"
            [replacement] = served._servers.values()
            assert replacement is not server and _parent(second.proc.pid) == replacement.proc.pid
        finally:
            second.close()

    monkeypatch.setenv(settings.FORK_WORKERS.name, "0")
    with depot.serving(tmp_path, max_idle=0) as served:
        own = Worker(profile)
        try:
            assert _parent(own.proc.pid) == os.getpid() and not served._servers, "its own interpreter"
        finally:
            own.close()
