"""Many worker processes on one study in the real PostgreSQL: budget, dead workers, lost connections.

The budget and dead-worker tests run twice: workers on the database itself, and workers
through driftlab's gRPC storage proxy in front of it, with no database URL in their environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psycopg2
import pytest
from optuna.trial import TrialState

from driftlab import settings, tuning
from driftlab.config import load_config_text
from support.tuning import experiment_text, finish, start_workers, study_proxy, worker_command

pytestmark = pytest.mark.db

#: A SIGKILLed worker's trial must be FAIL within this many heartbeat intervals
#: (grace = 3 intervals, plus polling by the live workers).
STALE_DETECTION_HEARTBEATS = 8
#: How long a test waits for a state it polls for before it fails.
WAIT_LIMIT_S = 120


@pytest.fixture(params=["database", "proxy"])
def via(request, pg_url, tmp_path):
    """How the workers reach the study: None (the database), or the address of the gRPC proxy in front of it."""
    if request.param == "database":
        yield None
        return
    with study_proxy(pg_url, tmp_path / "proxy.log") as address:
        yield address


def _setup(tmp_path: Path, pg_url: str, text: str, campaign: str, monkeypatch, via: str | None = None) -> tuple:
    """The study created, and the workers' environment: the database URL, or only the proxy's address."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    if via is None:
        monkeypatch.setenv(settings.DB_URL.name, pg_url)
        env[settings.DB_URL.name] = pg_url
    else:
        monkeypatch.delenv(settings.DB_URL.name, raising=False)
        monkeypatch.setenv(settings.STUDY_GRPC.name, via)
        env.pop(settings.DB_URL.name, None)
        env[settings.STUDY_GRPC.name] = via
    config_file = tmp_path / "experiment.yaml"
    config_file.write_text(text)
    config = load_config_text(text, "experiment")
    tuning.create_study(config, campaign)
    return config, config_file, env


def _in_the_database(pg_url: str, config, campaign: str) -> list:
    """The study's trials read from PostgreSQL directly (what the proxy wrote is there)."""
    return optuna.load_study(study_name=tuning.study_name(config, campaign), storage=pg_url).get_trials()


def _trials(config, campaign):
    return tuning.load_study(config, campaign).get_trials(deepcopy=False)


def _wait_for(predicate, what: str):
    deadline = time.monotonic() + WAIT_LIMIT_S
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"gave up after {WAIT_LIMIT_S}s waiting for {what}")


@pytest.mark.parametrize("workers, budget", [(8, 40), pytest.param(16, 48, marks=pytest.mark.slow)])
def test_workers_meet_the_budget_exactly(tmp_path, pg_url, monkeypatch, via, workers, budget):
    name = f"w{workers}"
    config, config_file, env = _setup(tmp_path, pg_url, experiment_text(budget, sampler="tpe"), name, monkeypatch,
                                      via)
    procs = start_workers(config_file, name, workers, env, sleep=0.01, log_dir=tmp_path)
    results = finish(procs)

    trials = _trials(config, name)
    counted = [t for t in trials if t.state in tuning.COUNTED_STATES]
    assert len(counted) == budget
    assert len({t.number for t in trials}) == len(trials)
    assert [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)] == []
    assert sum(r["ran"] for r in results) == len(trials)  # every trial was run by one worker
    assert sum(1 for r in results if r["ran"] > 0) >= 2, "the workers did not share the study"
    for i in range(workers):
        assert "Traceback" not in (tmp_path / f"worker{i}.err").read_text()
    stored = _in_the_database(pg_url, config, name)
    assert sum(t.state in tuning.COUNTED_STATES for t in stored) == budget
    assert {t.user_attrs["worker"] for t in stored} == {r["worker"] for r in results if r["ran"]}


def test_sigkilled_worker_trial_fails_and_is_retried(tmp_path, pg_url, monkeypatch, via):
    config, config_file, env = _setup(tmp_path, pg_url, experiment_text(12, heartbeat=1), "kill", monkeypatch, via)
    victim = subprocess.Popen(worker_command(config_file, "kill", 0, hang_first=True), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    hanging = _wait_for(lambda: [t for t in _trials(config, "kill")
                                 if t.state == TrialState.RUNNING and t.user_attrs.get("hanging")],
                        "the victim's trial to start")[0]
    others = start_workers(config_file, "kill", 2, env, sleep=0.05, log_dir=tmp_path)
    time.sleep(1.5)  # let the victim beat a few times, so it dies with a heartbeat on record
    victim.send_signal(signal.SIGKILL)
    killed_at = time.time()
    victim.wait()
    finish(others)

    trials = {t.number: t for t in _trials(config, "kill")}
    dead = trials[hanging.number]
    assert dead.state == TrialState.FAIL
    recovery_s = dead.datetime_complete.timestamp() - killed_at
    assert recovery_s <= STALE_DETECTION_HEARTBEATS * config.tuning.heartbeat_seconds, recovery_s
    retries = [t for t in trials.values()
               if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == hanging.number]
    assert len(retries) == 1 and retries[0].state in tuning.COUNTED_STATES
    assert retries[0].params == dead.params  # a retry, not a fresh sample
    assert sum(t.state in tuning.COUNTED_STATES for t in trials.values()) == 12
    (tmp_path / "recovery_seconds.json").write_text(json.dumps({"recovery_s": recovery_s}))
    print(f"SIGKILL recovery: trial FAIL {recovery_s:.2f}s after the kill")


@pytest.mark.slow
def test_budget_stays_exact_with_16_workers_some_sigkilled_mid_trial(tmp_path, pg_url, monkeypatch, via):
    budget, workers, victims = 64, 16, 4
    config, config_file, env = _setup(tmp_path, pg_url, experiment_text(budget, heartbeat=1), "k16", monkeypatch,
                                      via)
    procs = {p.pid: p for p in start_workers(config_file, "k16", workers, env, sleep=0.2, log_dir=tmp_path)}

    def busy_workers():
        trials = _trials(config, "k16")
        if sum(t.state in tuning.COUNTED_STATES for t in trials) < 8:
            return None  # let the study get going first
        # Through the proxy a slot's state and its worker attributes are two calls: a RUNNING trial may
        # not name its worker yet.
        pids = sorted({t.user_attrs.get("pid") for t in trials if t.state == TrialState.RUNNING} & procs.keys())
        return pids[:victims] if len(pids) >= victims else None

    killed = _wait_for(busy_workers, f"{victims} workers in the middle of a trial")
    for pid in killed:
        os.kill(pid, signal.SIGKILL)  # at once: each was running a trial a moment ago
    for pid in killed:
        procs.pop(pid).wait()
    results = finish(list(procs.values()))

    trials = {t.number: t for t in _trials(config, "k16")}
    failed = [t for t in trials.values() if t.state == TrialState.FAIL]
    assert sum(t.state in tuning.COUNTED_STATES for t in trials.values()) == budget
    assert [t for t in trials.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)] == []
    assert len(trials) == budget + len(failed)  # one replacement per failed trial, nothing more
    # A victim killed between taking a slot and naming itself on it (the proxy's two calls) leaves no pid.
    assert failed and {t.user_attrs.get("pid") for t in failed} - {None} <= set(killed), \
        "only the killed workers' trials failed"
    for dead in failed:
        retries = [t for t in trials.values()
                   if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == dead.number]
        if not dead.params:  # killed before its first parameter: its slot came back empty, not as a retry
            assert retries == []
            continue
        assert len(retries) == 1 and retries[0].state in tuning.COUNTED_STATES
        assert retries[0].user_attrs["pid"] not in killed  # a live worker ran it
    assert sum(r["ran"] for r in results) == len(trials) - sum(t.user_attrs.get("pid") in killed for t in trials.values())


def _terminate_backends(pg_url: str) -> int:
    dbname = pg_url.rsplit("/", 1)[1]
    admin = psycopg2.connect(pg_url.replace("postgresql+psycopg2://", "postgresql://", 1))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))
        killed = cur.fetchone()[0]
    admin.close()
    return killed


def test_workers_survive_dropped_connections(tmp_path, pg_url, monkeypatch):
    """pg_terminate_backend on every worker connection, three times, mid-run.

    (A server restart is not possible here: the tests share one PostgreSQL
    with other users; dropping every connection is what a restart does to the
    workers, and the retry path is the same.)
    """
    config, config_file, env = _setup(tmp_path, pg_url, experiment_text(30, heartbeat=1), "drop", monkeypatch)
    procs = start_workers(config_file, "drop", 3, env, sleep=0.05, log_dir=tmp_path)
    complete_before: set[int] = set()
    terminated = 0
    for wave in range(3):
        _wait_for(lambda w=wave: sum(t.state in tuning.COUNTED_STATES for t in _trials(config, "drop")) >= 6 * (w + 1)
                  or all(p.poll() is not None for p in procs), f"progress before drop {wave}")
        complete_before |= {t.number for t in _trials(config, "drop") if t.state == TrialState.COMPLETE}
        terminated += _terminate_backends(pg_url)
    finish(procs)

    assert terminated >= 3, "no worker connection was dropped: the test proved nothing"
    trials = {t.number: t for t in _trials(config, "drop")}
    assert all(trials[n].state == TrialState.COMPLETE for n in complete_before)  # nothing completed was lost
    assert sum(t.state in tuning.COUNTED_STATES for t in trials.values()) == 30
    logs = "".join((tmp_path / f"worker{i}.err").read_text() for i in range(3))
    assert "Traceback" not in logs


def test_optuna_cli_reads_the_study(tmp_path, pg_url, monkeypatch):
    config, _, _ = _setup(tmp_path, pg_url, experiment_text(5), "cli", monkeypatch)
    from support.tuning import cheap_objective

    tuning.run_worker(config, "cli", 0, lambda t: cheap_objective(t, config))
    optuna_cli = str(Path(sys.executable).with_name("optuna"))
    name = tuning.study_name(config, "cli")

    def cli(*args: str):
        done = subprocess.run([optuna_cli, *args, "--storage", pg_url, "-f", "json"], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    studies = cli("studies")
    assert [s["name"] for s in studies] == [name] and studies[0]["n_trials"] == 5
    trials = cli("trials", "--study-name", name)
    assert sorted(t["number"] for t in trials) == list(range(5))
    assert best_matches(cli("best-trial", "--study-name", name), tuning.best(config, "cli"))


def best_matches(cli_best: dict, ours: dict) -> bool:
    return cli_best["number"] == ours["best_trial"] and cli_best["value"] == pytest.approx(ours["best_value"],
                                                                                            rel=1e-12)
