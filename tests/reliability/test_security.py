"""Secrets stay secret, SQL stays data, paths stay inside their folder.

A real PostgreSQL role with a known password (a canary no other text can
contain) runs a whole ``driftlab run``; the password must appear in none of:
the process list while tasks run (``ps``: the URL travels by environment,
never argv), the CLI's output, the log files under ``home/logs`` (driftlab's
and every worker's), the reports (JSON, Markdown, HTML), kfp.local's task
outputs, the tables driftlab writes, the compiled pipeline YAML, and the
messages of errors shown to users. The control: the password really was in
play (the run stored its records through that role, and the workers'
environment held it).

Also here: SQL is built only with bound parameters (an AST scan of the code,
with a control that the scan catches an f-string query); campaign names that
try to climb out of the home folder or look like SQL are refused or stored as
data. The HTML report's escaping of a ``<script>`` experiment name is tested
in tests/report/test_report_render.py and, in a real browser, tests/report/test_report_browser.py.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from driftlab import cli
from driftlab.runs.spec import RunSpec
from driftlab.storage.store import Store, StoreError
from support.faults import ROOT, figure, kill_group, run_counts, scratch_database, test_password

CONFIG = """\
name: secrets
description: "x'); DROP TABLE driftlab_runs; -- <script>alert(1)</script>"
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: mlp, epochs: 1, batch_size: 64, hyperparameters: {units: 16}}
search_space: {learning_rate: {type: float, low: 0.001, high: 0.01, log: true}}
tuning: {trials: 1, workers: 1}
seeds: {init: [0, 1], shuffle: [0], split: [0], repeats: 1, deterministic: [true]}
profiles: {reference: cpu-default, pools: [{name: cpu-default}, {name: cpu-sse41, isa: SSE41}]}
"""
PLANNED_RUNS = 4  # 2 seeds on the reference, the same 2 on cpu-sse41
RUN_TIMEOUT_S = 600
PS_EVERY_S = 0.25


#: Command lines of the processes a run starts: training workers (forked from a fork server, whose command line
#: they keep, or started on their own) and kfp.local's task processes.
PROCESS_KINDS = {"driftlab.runs.worker": "worker", "driftlab.runs.forkserver": "worker",
                 "kfp.dsl.executor_main": "task"}


class ProcessListWatcher:
    """Samples ``ps -eo args`` and every /proc/*/cmdline until stopped; remembers what it saw."""

    def __init__(self, needle: str):
        self.needle = needle
        self.samples = 0
        self.leaks: list[str] = []
        self.saw: set[str] = set()
        self.env_holders = 0  # processes whose environment held the needle (the URL travels there)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "ProcessListWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            lines = listing.splitlines()
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                        if self.needle.encode() in (entry / "environ").read_bytes():
                            self.env_holders += 1
                    except OSError:
                        continue
            self.samples += 1
            for line in lines:
                if self.needle in line:
                    self.leaks.append(line)
                for marker, kind in PROCESS_KINDS.items():
                    if marker in line:
                        self.saw.add(kind)
            self._stop.wait(PS_EVERY_S)


def _files_holding(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _tables_holding(url: str, needle: str) -> list[str]:
    engine = sa.create_engine(url)
    found = []
    try:
        with engine.connect() as conn:
            for table in sa.inspect(conn).get_table_names():
                for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):  # names from the catalogue
                    if needle in repr(tuple(row)):
                        found.append(table)
                        break
    finally:
        engine.dispose()
    return found


@pytest.mark.db
@pytest.mark.slow
def test_password_never_leaks_from_a_whole_pipeline_run(tmp_path, request):
    row = figure(request, "DB password: ps, logs, reports, task outputs, tables", cases=7)
    password = test_password()
    config = tmp_path / "secrets.yaml"
    config.write_text(CONFIG)
    home = tmp_path / "home"
    with scratch_database(password=password) as url:
        env = {**os.environ, "DRIFTLAB_DB_URL": url, "DRIFTLAB_JOBS": "1"}
        env.pop("DRIFTLAB_HOME", None)
        with ProcessListWatcher(password) as watcher:
            proc = subprocess.Popen([sys.executable, "-m", "driftlab", "run", str(config), "--home", str(home),
                                     "--campaign", "sec"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                    text=True, start_new_session=True)
            try:
                out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
            finally:
                kill_group(proc)
        assert proc.returncode == 0, out[-3000:] + err[-3000:]
        counts = run_counts(url, "secrets")
        assert counts["ok"] == PLANNED_RUNS, "control: the run stored its records through the password's role"
        leaked_tables = _tables_holding(url, password)
        described = _tables_holding(url, "DROP TABLE driftlab_runs")

    assert watcher.samples >= 5 and watcher.saw == {"worker", "task"}, \
        "control: the process list was sampled while tasks and workers ran"
    assert watcher.env_holders > 0, "control: the URL really travelled (by environment)"
    assert watcher.leaks == [], f"the password is on a command line: {watcher.leaks[:1]}"
    assert password not in out + err, "the CLI printed the password"
    logs = list((home / "logs").glob("*.log"))
    assert any(p.name.startswith("worker-") for p in logs) and any(p.name.startswith("sec-") for p in logs), \
        f"control: the run's log and the workers' logs exist: {logs}"
    reports = sorted(p.name for p in home.glob("reports/sec/*/report.*"))
    assert reports == ["report.html", "report.json", "report.md"]
    assert _files_holding(home, password.encode()) == [], "the password is in a file under the home folder"
    assert leaked_tables == [], f"the password is stored in {leaked_tables}"
    assert "driftlab_executions" in described, "control: the SQL-looking description was stored as data"
    row.update(lost=0, duplicates=0, wasted=0)


def test_compiled_pipeline_holds_no_database_url(tmp_path, request):
    row = figure(request, "DB password: compiled pipeline YAML", cases=2)
    password = test_password()
    out = tmp_path / "driftlab.yaml"
    env = {**os.environ, "DRIFTLAB_DB_URL": f"postgresql+psycopg2://driftlab:{password}@db:5432/driftlab"}
    proc = subprocess.run([sys.executable, "-m", "driftlab", "compile", "--output", str(out)], capture_output=True,
                          text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    compiled = out.read_text()
    assert "retrain-across-seeds" in compiled, "control: a real pipeline was compiled"
    assert password not in compiled and "postgresql" not in compiled.lower()
    checked_in = (ROOT / "pipelines" / "driftlab.yaml").read_text()
    assert "postgresql" not in checked_in.lower() and "DRIFTLAB_DB_URL" in checked_in, \
        "the checked-in pipeline names the variable (from a Secret), never a URL"
    row.update(lost=0, duplicates=0, wasted=0)


@pytest.mark.parametrize("url", [
    "postgresql+psycopg2://driftlab:{pw}@127.0.0.1:1/driftlab",         # unreachable
    "postgresql+psycopg2://driftlab:{pw}@127.0.0.1:notaport/driftlab",  # malformed port
    "postgresql+nosuchdriver://driftlab:{pw}@127.0.0.1/driftlab",       # unknown driver
    "mysql://driftlab:{pw}@127.0.0.1/driftlab",                         # driver not installed
    "{pw}",                                                             # not a URL at all
])
def test_database_errors_shown_to_users_hide_the_password(url, tmp_path, monkeypatch, capsys, request):
    row = figure(request, "DB password: errors shown to users", cases=1)
    password = test_password()
    config = tmp_path / "secrets.yaml"
    config.write_text(CONFIG)
    monkeypatch.setenv("DRIFTLAB_DB_URL", url.format(pw=password))
    monkeypatch.setenv("DRIFTLAB_HOME", str(tmp_path / "home"))  # restored afterwards (cmd_run sets it)
    monkeypatch.delenv("DRIFTLAB_JOBS", raising=False)
    assert cli.main(["run", str(config), "--home", str(tmp_path / "home")]) == cli.EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert "results database" in captured.err and "Traceback" not in captured.err, captured.err
    assert password not in captured.out + captured.err
    with pytest.raises(StoreError) as info:
        Store(url.format(pw=password))
    assert password not in str(info.value) and password not in repr(info.value)
    row.update(lost=0, duplicates=0, wasted=0)


# -- SQL ---------------------------------------------------------------------------------------------------------
SQL_CALLS = {"execute", "exec_driver_sql", "executescript", "executemany", "text"}
SCANNED = ["driftlab", "components", "pipelines", "scripts"]


def built_sql(source: str, filename: str = "<code>") -> list[str]:
    """Calls that pass SQL built from strings at run time (f-string, %, +, .format) instead of bound parameters."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name not in SQL_CALLS:
            continue
        sql = node.args[0]
        dynamic = isinstance(sql, ast.JoinedStr) or (isinstance(sql, ast.BinOp) and isinstance(
            sql.op, (ast.Mod, ast.Add))) or (isinstance(sql, ast.Call) and isinstance(sql.func, ast.Attribute)
                                            and sql.func.attr == "format")
        if dynamic:
            found.append(f"{filename}:{node.lineno}")
    return found


def test_sql_scan_catches_a_query_built_from_a_string():
    bad = 'conn.execute(sa.text(f"SELECT * FROM runs WHERE name = \'{name}\'"))\ncur.execute("DELETE %s" % x)\n'
    good = 'conn.execute(sa.text("SELECT * FROM runs WHERE name = :n"), {"n": name})\n'
    assert sorted(built_sql(bad)) == ["<code>:1", "<code>:2"]
    assert built_sql(good) == []


def test_sql_is_only_built_with_bound_parameters(request):
    row = figure(request, "SQL built from strings in driftlab's code", cases=0)
    files = [p for d in SCANNED for p in (ROOT / d).rglob("*.py")]
    row["cases"] = len(files)
    offenders = [hit for p in files for hit in built_sql(p.read_text(), str(p.relative_to(ROOT)))]
    assert len(files) > 30, "control: the code was found"
    assert offenders == [], f"SQL built from strings (use bound parameters): {offenders}"
    row.update(lost=0, duplicates=0, wasted=0)


SQL_LOOKING = "x'); DROP TABLE driftlab_runs; --"


def test_sql_and_html_looking_campaigns_are_stored_as_data(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'r.sqlite'}")
    exp = store.experiment_id("exp")
    for campaign in (SQL_LOOKING, "<script>alert(1)</script>", "Robert'); --"):
        spec = RunSpec(experiment="exp", campaign=campaign, dataset={"name": "digits"}, data_digest="d",
                       builder="mlp", hparams={}, epochs=1, batch_size=8, init_seed=0, shuffle_seed=0, split_seed=0,
                       repeat=0, deterministic=True, profile={"name": "cpu-default"})
        assert store.save_runs(exp, [(spec, {"status": "ok"})]) == 1
        [stored] = store.load_runs("exp", campaign, with_arrays=False)
        assert stored["campaign"] == campaign
    assert store.count_runs("exp") == 3, "every table is still there, every row is data"


@pytest.mark.parametrize("campaign", ["../../escape", "/etc", ".hidden", "a/b", SQL_LOOKING, "x" * 129, ""])
def test_campaign_names_that_leave_the_home_folder_are_refused(campaign, tmp_path, monkeypatch, capsys, request):
    row = figure(request, "campaign names: path traversal, SQL, too long", cases=1)
    config = tmp_path / "secrets.yaml"
    config.write_text(CONFIG)
    monkeypatch.setenv("DRIFTLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DRIFTLAB_DB_URL", raising=False)
    before = set(tmp_path.rglob("*"))
    assert cli.main(["run", str(config), "--home", str(tmp_path / "home"), "--campaign", campaign]) == \
        cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "--campaign" in err and "Traceback" not in err
    assert not (tmp_path / "home").exists() and set(tmp_path.rglob("*")) == before, "nothing was written"
    row.update(lost=0, duplicates=0, wasted=0)
