"""Two `driftlab run` at once in one fresh folder, runs started in the same second, kfp.local's temporary folders.

Real processes throughout: the collision-prone phase (the real CLI on a fresh
folder: database, campaign check, execution row, report folder, log, temporary
folder, Optuna journal and study, the first and the last task) 20 times (before
the fix, 2 of 12 tries failed: 20 tries catch that rate 97 times in 100), and the whole
pipeline once (a full pair takes about 30-90 s on 2 cores). kfp.local leaves one ``tmp.*`` folder per task in
``$TMPDIR``; the control runs kfp.local bare to show it does, and a real
``driftlab run`` in a private ``TMPDIR`` leaves none.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from driftlab.launch import local as local_run
from support.faults import figure

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 600
# Tries of the collision phase: 5 keep `make test` under 30 minutes on a 2-core machine half as fast as
# BENCHMARKS.md's (a try is two runs' checks, 11-48 s); RELIABILITY.md's row was measured with COLLISION_TRIES=20.
PHASE_TRIES = int(os.environ.get("COLLISION_TRIES", "5"))
FULL_PAIRS = 1

SMALLEST = """\
name: collide
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: mlp, epochs: 1, batch_size: 64, hyperparameters: {units: 8}}
seeds: {init: [0, 1], shuffle: [0], split: [0], repeats: 1, deterministic: [true]}
profiles: {reference: cpu-default, pools: [{name: cpu-default}]}
"""
# With a search space: the first task creates the Optuna study in the journal file of the fresh folder.
TUNED = SMALLEST.replace("name: collide", "name: collidetuned") + """\
search_space: {learning_rate: {type: float, low: 0.001, high: 0.01, log: true}}
tuning: {trials: 2, workers: 2, seed: 0}
"""

# The real `driftlab run` (cli.main) with the pipeline cut to its first and last tasks, each a process
# of its own as kfp.local runs them: everything on the way in and out is the CLI's own.
PHASE_DRIVER = r"""
import subprocess, sys, time
from driftlab import cli
import driftlab.pipelines.driftlab_pipeline as graph

TASK = ("import sys\nfrom driftlab import settings, stages\ntext = sys.stdin.read()\n"
        "if sys.argv[1] == 'prepare':\n    stages.prepare(text, sys.argv[2])\n"
        "else:\n    stages.aggregate(text, sys.argv[2], settings.REPORT_DIR.raw())\n")


def first_and_last_task(**_):
    def pipeline(config_yaml, campaign):
        for stage in ("prepare", "aggregate"):
            subprocess.run([sys.executable, "-c", TASK, stage, campaign], input=config_yaml, text=True, check=True)
    return pipeline


graph.build_pipeline = first_and_last_task
home, config, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start_at - time.time()))
sys.exit(cli.main(["run", config, "--home", home]))
"""
INCOMPLETE = 4  # the gate's exit status with nothing trained: what the cut pipeline must end with


def _env(tmpdir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DRIFTLAB_DB_URL", "DRIFTLAB_WHERE", "DRIFTLAB_HOME", "DRIFTLAB_EXECUTION_STALE_S")}
    env["DRIFTLAB_JOBS"] = "1"
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return env


def _executions(home: Path) -> list[tuple[str, str]]:
    engine = sa.create_engine(f"sqlite:///{home / 'driftlab.sqlite'}")
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text("SELECT campaign, status FROM driftlab_executions"))]
    finally:
        engine.dispose()


def _report_paths(output: str) -> list[str]:
    return re.findall(r"^Report: (\S+)/report\.html$", output, re.M)


def _pair(argv_for, env: dict[str, str], *, timeout: float) -> list[subprocess.CompletedProcess]:
    """Start two processes at once; wait for both."""
    procs = [subprocess.Popen(argv_for(i), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, cwd=ROOT) for i in range(2)]
    done = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, ""))
    return done


# -- report folders and temporary folders (fast) ------------------------------------------------------------
class _OneSecond(dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2030, 1, 2, 3, 4, 5)


def test_runs_started_in_the_same_second_get_their_own_report_folder_and_log(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-tmp"))
    (tmp_path / "system-tmp").mkdir()
    monkeypatch.setattr(local_run.dt, "datetime", _OneSecond)
    suffixes = iter(["aaaa", "aaaa", "bbbb"])
    monkeypatch.setattr(local_run.secrets, "token_hex", lambda n: next(suffixes))
    home = tmp_path / "home"
    first, second = local_run.run_folders(home, "c"), local_run.run_folders(home, "c")
    assert first.report_dir.name == "20300102-030405-aaaa", "control: both runs started in the same second"
    assert second.report_dir.name == "20300102-030405-bbbb", "the taken name was not reused: another was drawn"
    assert first.log_path != second.log_path and first.tmp_dir != second.tmp_dir
    assert first.log_path.name == "c-20300102-030405-aaaa.log"


def test_many_runs_at_once_never_share_a_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-tmp"))
    (tmp_path / "system-tmp").mkdir()
    found, barrier = [], threading.Barrier(32)

    def start() -> None:
        barrier.wait()
        found.append(local_run.run_folders(tmp_path / "home", "c"))

    threads = [threading.Thread(target=start) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps = {f.report_dir.name.rsplit("-", 1)[0] for f in found}
    assert len(stamps) <= 2, "control: they started within a second or two"
    assert len({f.report_dir for f in found}) == len({f.log_path for f in found}) == 32


@pytest.mark.parametrize("ending", ["success", "failure", "ctrl-c"])
def test_the_runs_temporary_folder_takes_the_tasks_files_and_is_removed_however_it_ends(tmp_path, monkeypatch,
                                                                                       ending):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    folder = tmp_path / "driftlab-run-x"
    folder.mkdir()
    raised = {"success": None, "failure": RuntimeError("a task failed"), "ctrl-c": KeyboardInterrupt()}[ending]
    made, before = [], tempfile.tempdir
    with pytest.raises(type(raised)) if raised else contextlib.nullcontext():
        with local_run.temporary_files_in(folder):
            made.append(Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True)
                             .stdout.strip()))  # what kfp.local's task command does
            made.append(Path(tempfile.mkdtemp()))  # what kfp.local does in this process
            assert all(p.parent == folder and p.is_dir() for p in made), made
            if raised:
                raise raised
    assert not folder.exists() and not any(p.exists() for p in made)
    assert os.environ["TMPDIR"] == str(tmp_path) and tempfile.tempdir == before, "both restored"


def _synthetic_report() -> dict:
    from driftlab.config import ExperimentConfig
    from driftlab.drift import analyze
    from support.synthetic import SyntheticPlan, generate

    cfg = ExperimentConfig.model_validate({"name": "syn", "dataset": {"name": "digits"}, "profiles": {"auto": True}})
    result = analyze(generate(SyntheticPlan(profiles=("ref", "b"), n_eval=50, sigmas={"init": 0.02})), cfg,
                     reference="ref")
    result["experiment"] = {"name": "syn", "campaign": "c", "task": "classification"}
    return result


@pytest.mark.parametrize("started_by", ["driftlab run", "a bare aggregate task"])
def test_a_report_folder_that_cannot_be_written_names_the_fix_for_how_it_was_run(tmp_path, monkeypatch, started_by):
    from driftlab.report import ReportWriteError, write_all

    for name in ("DRIFTLAB_LOG_FILE", "DRIFTLAB_HOME", "DRIFTLAB_REPORT_DIR"):
        monkeypatch.delenv(name, raising=False)
    if started_by == "driftlab run":  # what run_pipeline sets for its tasks
        monkeypatch.setenv("DRIFTLAB_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("DRIFTLAB_LOG_FILE", str(tmp_path / "home" / "logs" / "c.log"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ReportWriteError) as info:
        write_all(_synthetic_report(), blocker / "report")
    message = str(info.value)
    assert str(blocker / "report") in message and "free space" in message, message
    if started_by == "driftlab run":
        assert "`driftlab run` command again with --home DIR" in message and str(tmp_path / "home") in message
        assert "DRIFTLAB_REPORT_DIR" not in message, "driftlab run sets it itself: naming it would not help"
    else:
        assert "set DRIFTLAB_REPORT_DIR to a writable folder" in message and "--home" not in message


# -- real processes (slow) --------------------------------------------------------------------------------------
BARE_KFP = """
import os, sys
from kfp import dsl, local

@dsl.component(base_image="python:3.11", install_kfp_package=False)
def hello() -> str:
    return "hi"

os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[1])
for _ in range(int(sys.argv[2])):
    hello()
"""


def _tmp_folders(folder: Path) -> list[Path]:
    # os.walk, not rglob: a running task removes its tmp.* folder while this walks (rglob raises then).
    return sorted(Path(root) / name for root, dirs, _ in os.walk(folder) for name in dirs if name.startswith("tmp."))


@pytest.mark.slow
def test_a_driftlab_run_leaves_no_kfp_tmp_folders_behind(tmp_path, request):
    row = figure(request, "kfp.local temporary folders left in TMPDIR by one `driftlab run`", cases=2)
    # Control: kfp.local itself leaves one tmp.* folder per task in TMPDIR.
    bare_tmp, script = tmp_path / "bare-tmp", tmp_path / "bare_kfp.py"
    bare_tmp.mkdir()
    script.write_text(BARE_KFP)
    bare = subprocess.run([sys.executable, str(script), str(tmp_path / "bare-root"), "3"], env=_env(bare_tmp),
                          capture_output=True, text=True, timeout=300)
    assert bare.returncode == 0, bare.stderr[-2000:]
    assert len(_tmp_folders(bare_tmp)) == 3, "control: kfp.local leaves one tmp.* per task"

    private, config, home = tmp_path / "private-tmp", tmp_path / "collide.yaml", tmp_path / "home"
    private.mkdir()
    config.write_text(SMALLEST)
    before = sorted(private.iterdir())
    proc = subprocess.Popen([sys.executable, "-m", "driftlab", "run", str(config), "--home", str(home)],
                            env=_env(private), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    seen_inside = 0
    while proc.poll() is None:  # the tasks' tmp.* folders land in the run's own folder while it runs
        seen_inside = max(seen_inside, len([p for p in _tmp_folders(private) if p.parent.name.startswith(
            "driftlab-run-")]))
        time.sleep(0.2)
    out = proc.stdout.read()
    assert proc.returncode == 0, out[-3000:]
    [log] = (home / "logs").glob("default-*.log")
    tasks = len(re.findall(r"Executing task '", log.read_text()))
    assert sorted(private.iterdir()) == before == [], f"left in TMPDIR: {sorted(private.iterdir())}"
    assert tasks >= 8 and seen_inside >= tasks - 2, (tasks, seen_inside)  # the last poll may miss the last task
    [report] = _report_paths(out)
    assert {"report.json", "report.md", "report.html"} <= {p.name for p in Path(report).iterdir()}
    assert list((home / "kfp").glob("*/aggregate-drift/report_html")), "task outputs are kept"
    row.update(lost=0, duplicates=0, wasted=0, note=f"{tasks} tasks: kfp.local alone would leave {tasks} tmp.* "
                                                   f"(control: 3 of 3 bare tasks left one); left: 0")


@pytest.mark.slow
def test_two_runs_started_together_in_a_fresh_folder_collision_phase(tmp_path, request):
    row = figure(request, f"two `driftlab run` at once in a fresh folder (collision phase), {PHASE_TRIES} tries",
                 cases=PHASE_TRIES)
    config = tmp_path / "tuned.yaml"
    config.write_text(TUNED)
    env = _env()
    failures, waited, seconds = [], 0, []
    for attempt in range(PHASE_TRIES):
        home = tmp_path / f"fresh-{attempt}"
        start_at = time.time() + 1.0
        t0 = time.monotonic()
        pair = _pair(lambda i: [sys.executable, "-c", PHASE_DRIVER, str(home), str(config), str(start_at)], env,
                     timeout=RUN_TIMEOUT_S)
        seconds.append(time.monotonic() - t0)
        outputs = [p.stdout for p in pair]
        reports = [_report_paths(o) for o in outputs]
        problems = [f"exit {p.returncode}" for p in pair if p.returncode != INCOMPLETE]
        problems += ["database is locked" for o in outputs if "locked" in o]
        problems += ["traceback" for o in outputs if "Traceback" in o]
        if not problems and (len({r[0] for r in reports if r}) != 2 or not all(reports)):
            problems.append(f"report folders {reports}")
        if not problems and sorted(_executions(home)) != [("default", "succeeded")] * 2:
            problems.append(f"executions {_executions(home)}")
        if problems:
            failures.append((attempt, problems, [o[-1500:] for o in outputs]))
        waited += sum("waiting: campaign default" in o for o in outputs)
    row.update(lost=0, duplicates=0, recover_s=round(max(seconds), 1),
               note=f"{PHASE_TRIES} tries, {len(failures)} failures, {waited} waited for the other; "
                    f"{sum(seconds):.0f} s in all")
    assert not failures, failures


@pytest.mark.slow
def test_two_full_runs_started_together_in_a_fresh_folder(tmp_path, request):
    row = figure(request, f"two full `driftlab run` at once in a fresh folder, {FULL_PAIRS} pairs", cases=FULL_PAIRS)
    config = tmp_path / "collide.yaml"
    config.write_text(SMALLEST)
    seconds = []
    for attempt in range(FULL_PAIRS):
        home = tmp_path / f"fresh-{attempt}"
        t0 = time.monotonic()
        pair = _pair(lambda i: [sys.executable, "-m", "driftlab", "run", str(config), "--home", str(home)], _env(),
                     timeout=RUN_TIMEOUT_S)
        seconds.append(time.monotonic() - t0)
        outputs = [p.stdout for p in pair]
        assert [p.returncode for p in pair] == [0, 0], [o[-3000:] for o in outputs]
        assert not any("locked" in o or "Traceback" in o for o in outputs), outputs
        reports = [_report_paths(o) for o in outputs]
        assert all(len(r) == 1 for r in reports) and reports[0] != reports[1], reports
        for [folder] in reports:
            assert (Path(folder) / "report.json").is_file(), folder
        assert len(list((home / "logs").glob("default-*.log"))) == 2, "each run has its own log"
        assert sorted(_executions(home)) == [("default", "succeeded")] * 2
        assert sum("waiting: campaign default" in o for o in outputs) == 1, "the later run waited for the first"
        assert sum("2 already recorded, 0 to train" in o for o in outputs) == 1, "and trained nothing again"
        engine = sa.create_engine(f"sqlite:///{home / 'driftlab.sqlite'}")
        with engine.connect() as conn:
            keys = conn.execute(sa.text("SELECT count(*), count(DISTINCT key) FROM driftlab_runs")).one()
        engine.dispose()
        assert tuple(keys) == (2, 2), "each planned run recorded once"
    row.update(lost=0, duplicates=0, wasted=0, recover_s=round(max(seconds), 1),
               note=f"{FULL_PAIRS} pairs, 0 failures, separate report folders; {sum(seconds) / FULL_PAIRS:.0f} s "
                    "a pair")
