"""Interrupt a real retrain stage halfway (SIGINT or SIGKILL), run it again: every run exactly once.

The stage runs in its own process (``stages.retrain_seeds``, as a KFP task
would), against SQLite and against the real PostgreSQL server. The control:
the first attempt really was cut short (fewer runs than planned, process
gone), so the second attempt really had work left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from driftlab import stages
from driftlab.config.seedplan import seed_points
from driftlab.storage.store import Store

pytestmark = pytest.mark.slow

PLAN_RUNS = 6
KILL_AFTER_RUNS = 2
STAGE_TIMEOUT_S = 240
EXIT_TIMEOUT_S = 60

CONFIG = """\
name: resume
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: mlp, epochs: 1, batch_size: 64, hyperparameters: {units: 16}}
seeds: {init: [0, 1, 2], shuffle: [0], split: [0], repeats: 2, deterministic: [true]}
profiles: {reference: cpu-default, pools: [{name: cpu-default}]}
"""

STAGE = """
import json, sys
from driftlab import stages
summary = stages.retrain_seeds(open(sys.argv[1]).read(), "camp", {}, jobs=1, quiet=True)
print("SUMMARY " + json.dumps(summary))
"""


def _start(env: dict[str, str], config_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", STAGE, str(config_path)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                            start_new_session=True)


def _processes_marked(marker: str) -> list[int]:
    """Live processes (the stage and its workers) whose environment carries this test's marker."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"DRIFTLAB_TEST_MARKER={marker}".encode() in (entry / "environ").read_bytes():
                status = (entry / "status").read_text()
                if "\nState:\tZ" not in status:
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _rows(store: Store) -> dict[str, tuple[str, object]]:
    return {r["key"]: (r["weights_digest"], r["created_at"]) for r in store.load_runs("resume", with_arrays=False)}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupted_stage_resumes_with_every_run_recorded_once(database_url, sig, tmp_path):
    marker = uuid.uuid4().hex
    env = {**os.environ, "DRIFTLAB_DB_URL": database_url, "DRIFTLAB_HOME": str(tmp_path / "home"),
           "DRIFTLAB_TEST_MARKER": marker, "DRIFTLAB_JOBS": "1"}
    env.pop("DRIFTLAB_WHERE", None)
    store = Store(database_url)
    planned = {s.key for s in stages._run_specs(stages.load(CONFIG), "camp", {}, stages._profiles(
        stages.load(CONFIG)).reference, seed_points(stages.load(CONFIG).seeds), "seeds")}
    assert len(planned) == PLAN_RUNS

    config_path = tmp_path / "resume.yaml"
    config_path.write_text(CONFIG)
    first = _start(env, config_path)
    try:
        _wait_for(lambda: store.count_runs("resume") >= KILL_AFTER_RUNS or first.poll() is not None,
                  STAGE_TIMEOUT_S, f"{KILL_AFTER_RUNS} recorded runs")
        assert first.poll() is None, f"the stage ended before it could be interrupted: {first.stderr.read()}"
        if sig == signal.SIGINT:
            os.killpg(first.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        else:
            os.kill(first.pid, signal.SIGKILL)  # the stage alone: its workers must not outlive it
        first.wait(timeout=EXIT_TIMEOUT_S)
        _wait_for(lambda: not _processes_marked(marker), EXIT_TIMEOUT_S, "the stage's workers to exit")
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    err = first.stderr.read()
    if sig == signal.SIGINT:
        assert "interrupted;" in err and "Run the same stage again" in err, err
    before = _rows(store)
    assert KILL_AFTER_RUNS <= len(before) < PLAN_RUNS, "control: the first attempt was cut short"
    assert set(before) <= planned

    second = _start(env, config_path)
    out, err2 = second.communicate(timeout=STAGE_TIMEOUT_S)
    assert second.returncode == 0, err2
    summary = json.loads(out.split("SUMMARY ", 1)[1])
    assert summary["planned"] == PLAN_RUNS
    assert summary["skipped"] == len(before), "only the remaining runs are trained"
    assert summary["trained"] == PLAN_RUNS - len(before) and summary["failed"] == 0
    assert f"{len(before)} already recorded, {PLAN_RUNS - len(before)} to train" in err2

    after = _rows(store)
    assert set(after) == planned and store.count_runs("resume") == PLAN_RUNS, "every planned run exactly once"
    for key, row in before.items():
        assert after[key] == row, f"finished run {key} was lost or retrained"
    digests_by_init: dict[int, set[str]] = {}
    for r in store.load_runs("resume", with_arrays=False):
        digests_by_init.setdefault(r["init_seed"], set()).add(r["weights_digest"])
    assert all(len(d) == 1 for d in digests_by_init.values()), "repeats across the interruption are identical"
