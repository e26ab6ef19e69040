"""User model code never sees the database password: not in its environment, not in /proc.

A builder written the way a Keras user writes one also dumps everything it can reach:
``os.environ``, ``/proc/self/environ`` and the ``environ`` and ``cmdline`` of every
ancestor up to PID 1. It runs during tuning (trial processes) and during retraining
(retrain workers), in a real ``driftlab run`` and in the stages called the way a
pipeline task calls them, with a canary password in each form a URL can carry it:
userinfo, the ``password=`` query parameter, and libpq's ``PGPASSWORD`` beside a URL
without one. The controls: the builder ran in both stages, it saw an ordinary variable
set on purpose, the runs were stored through the password's role, and the stage's own
environment still held the URL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from support.faults import figure, kill_group, run_counts, scratch_database, test_password

SPY_BUILDER = '''
import json, os


def _ancestors():
    pid, seen = os.getpid(), {}
    while pid > 1 and pid not in seen:
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read().decode("latin-1")
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode("latin-1")
            status = open(f"/proc/{pid}/status").read()
        except OSError as exc:
            environ = cmdline = f"<unreadable: {exc}>"
            break
        seen[pid] = {"environ": environ, "cmdline": cmdline}
        pid = int(next(l.split()[1] for l in status.splitlines() if l.startswith("PPid:")))
    return seen


def spy(hp, *, n_features, n_outputs, task):
    import keras

    with open(os.environ["SPY_OUT"], "a") as out:
        out.write(json.dumps({"env": dict(os.environ), "proc": _ancestors()}) + "\\n")
    model = keras.Sequential([keras.Input((n_features,)),
                              keras.layers.Dense(hp["units"], activation="relu"),
                              keras.layers.Dense(n_outputs, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(hp["learning_rate"]), loss="sparse_categorical_crossentropy")
    return model
'''
CONFIG = """\
name: spied
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: "spy_builders:spy", epochs: 1, batch_size: 64, hyperparameters: {units: 8}}
search_space: {learning_rate: {type: float, low: 0.001, high: 0.01, log: true}}
tuning: {trials: 2, workers: 2}
seeds: {init: [0, 1], shuffle: [0], split: [0], repeats: 1, deterministic: [true]}
profiles: {reference: cpu-default, pools: [{name: cpu-default}]}
"""
STAGES = textwrap.dedent("""
    import os, sys
    from driftlab import stages
    text = open(sys.argv[1]).read()
    stages.prepare(text, "c")
    stages.tune(text, "c", 0)
    best = stages.select_best(text, "c")
    stages.retrain_seeds(text, "c", best["best_params"])
    assert os.environ.get("DRIFTLAB_DB_URL"), "control: the stage itself still holds the URL"
""")
TIMEOUT_S = 600
#: Where user code may run: training workers, and validate's one-off build on a dummy batch.
#: (A worker forked by the run's fork server keeps the fork server's command line.)
USER_CODE_PROCESSES = ("driftlab.runs.worker", "driftlab.runs.forkserver", "driftlab.runs.build_check")
WORKER_PROCESSES = ("driftlab.runs.worker", "driftlab.runs.forkserver")
MARK = "visible-on-purpose"


def _forms(url: str, password: str) -> dict[str, dict[str, str]]:
    bare = sa.engine.make_url(url).set(password=None).render_as_string(hide_password=False)
    return {
        "userinfo": {"DRIFTLAB_DB_URL": url},
        "query": {"DRIFTLAB_DB_URL": f"{bare}?password={password}"},
        "pgpassword": {"DRIFTLAB_DB_URL": bare, "PGPASSWORD": password},
    }


def _workspace(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "spy_builders.py").write_text(SPY_BUILDER)
    config = tmp_path / "spied.yaml"
    config.write_text(CONFIG)
    return config, tmp_path / "spy.jsonl"


def _env(tmp_path: Path, spy_out: Path, secret: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLAB_", "PG"))}
    env.update(secret, SPY_OUT=str(spy_out), SPY_MARK=MARK, DRIFTLAB_JOBS="1", DRIFTLAB_HOME=str(tmp_path / "home"),
               PYTHONPATH=f"{tmp_path}{os.pathsep}{env.get('PYTHONPATH', '')}")
    return env


def _check(spy_out: Path, password: str) -> int:
    """How many times the builder ran in a training worker; fails on any trace of the password it could reach."""
    records = [json.loads(line) for line in spy_out.read_text().splitlines()]
    for record in records:
        assert record["env"].get("SPY_MARK") == MARK, "control: the builder sees variables set on purpose"
        assert password not in json.dumps(record["env"]), "the password is in the builder's environment"
        for pid, seen in record["proc"].items():
            assert password not in seen["environ"], f"the password is in /proc/{pid}/environ: {seen['cmdline'][:200]}"
            assert password not in seen["cmdline"], f"the password is in /proc/{pid}/cmdline"
        own = next(iter(record["proc"].values()))["cmdline"]
        assert any(m in own for m in USER_CODE_PROCESSES), f"user code ran outside a worker process: {own[:200]}"
        assert len(record["proc"]) >= 2, "control: the scan reached the parent"
    return sum(any(m in next(iter(r["proc"].values()))["cmdline"] for m in WORKER_PROCESSES) for r in records)


@pytest.mark.db
@pytest.mark.slow
@pytest.mark.parametrize("form", ["userinfo", "query", "pgpassword"])
def test_stages_keep_every_password_form_from_user_code(form, tmp_path, request):
    row = figure(request, "DB password: user model code during tuning and retraining (env, /proc)", cases=1,
                 note=f"form: {form}")
    password = test_password()
    config, spy_out = _workspace(tmp_path)
    with scratch_database(password=password) as url:
        env = _env(tmp_path, spy_out, _forms(url, password)[form])
        proc = subprocess.run([sys.executable, "-c", STAGES, str(config)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        assert proc.returncode == 0, proc.stderr[-3000:]
        counts = run_counts(url, "spied")
    assert counts["ok"] == 2, "control: the runs were stored through the password's role"
    n = _check(spy_out, password)
    assert n == 2 + 2, "control: the builder ran for both trials and both retrain runs"
    assert password not in proc.stdout + proc.stderr
    row.update(lost=0, duplicates=0, wasted=0)


@pytest.mark.db
@pytest.mark.slow
# Every form goes through the stages above; the whole run takes the form the issue found on the terminal.
@pytest.mark.parametrize("form", ["query"])
def test_a_whole_run_keeps_the_password_from_user_code(form, tmp_path, request):
    row = figure(request, "DB password: user model code during tuning and retraining (env, /proc)", cases=1,
                 note=f"form: {form}, a whole `driftlab run`")
    password = test_password()
    config, spy_out = _workspace(tmp_path)
    with scratch_database(password=password) as url:
        env = _env(tmp_path, spy_out, _forms(url, password)[form])
        proc = subprocess.Popen([sys.executable, "-m", "driftlab", "run", str(config), "--campaign", "spy"],
                                env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        finally:
            kill_group(proc)
        assert proc.returncode == 0, out[-3000:] + err[-3000:]
        counts = run_counts(url, "spied")
    assert counts["ok"] == 2, "control: the runs were stored through the password's role"
    n = _check(spy_out, password)
    # `driftlab run` builds the model once in the first worker before the trials (the build check).
    assert n >= 2 + 2, "control: the builder ran for both trials and both retrain runs"
    assert password not in out + err
    shown = " ".join((out + err).split())  # the terminal wraps long lines
    assert "results in postgresql+psycopg2://" in shown and ("password=***" if form == "query" else ":***@") in shown, \
        "control: the results line names the database, the password masked"
    logs = list((tmp_path / "home" / "logs").glob("*.log"))
    assert logs and all(password not in p.read_text(errors="replace") for p in logs), "the password is in a log"
    row.update(lost=0, duplicates=0, wasted=0)


def test_the_scan_finds_a_password_left_in_proc(tmp_path):
    """Control for the scan itself: a child of a process started with the URL finds it in its parent's environ."""
    password = test_password()
    config, spy_out = _workspace(tmp_path)
    env = _env(tmp_path, spy_out, {"LEAKY_URL": f"postgresql://u:{password}@h/db"})
    child = "import json,os,sys; sys.path.insert(0, os.getcwd()); import spy_builders as s; " \
            "open(os.environ['SPY_OUT'],'w').write(json.dumps({'env': {}, 'proc': s._ancestors()}))"
    parent = f"import subprocess,sys; subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    subprocess.run([sys.executable, "-c", parent], env=env, cwd=tmp_path, check=True, timeout=60)
    seen = json.loads(spy_out.read_text())["proc"]
    assert any(password in s["environ"] for s in seen.values()), "the scan must see what a leaky parent holds"
