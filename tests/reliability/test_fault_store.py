"""Results databases driftlab did not make, or made and then lost pieces of; schema creation races.

tests/storage/test_store.py covers a file that is not SQLite at all and a newer
schema version; here: tables dropped behind driftlab's back, a foreign table
wearing a driftlab name, a foreign application's SQLite file, a garbage
schema version, and many processes creating the schema of a fresh database
at the same moment (two pods of a pipeline starting together).
"""

from __future__ import annotations

import sqlite3
import threading

import pytest
import sqlalchemy as sa

from driftlab import cli
from driftlab.runs.spec import RunSpec
from support.factories import run_spec
from driftlab.storage.store import SCHEMA_VERSION, Store, StoreError
from support.faults import figure

RACERS = 8


def spec(init_seed: int = 0) -> RunSpec:
    return run_spec(init_seed=init_seed)


def test_many_processes_creating_the_schema_at_once(database_url, request):
    row = figure(request, f"schema created by {RACERS} at once on a fresh DB", cases=RACERS)
    barrier = threading.Barrier(RACERS)
    errors: list[BaseException] = []

    def open_store(i: int) -> None:
        try:
            barrier.wait()
            store = Store(database_url)
            store.save_runs(store.experiment_id("exp"), [(spec(i % 2), {"status": "ok"})])
            store.engine.dispose()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_store, args=(i,)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    store = Store(database_url)
    assert store.count_runs("exp") == 2 and store.done_keys([spec(0).key, spec(1).key]) == {spec(0).key, spec(1).key}
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM driftlab_experiments")).scalar_one() == 1
        assert conn.execute(sa.text("SELECT value FROM driftlab_meta WHERE key = 'schema_version'")
                            ).scalar_one() == str(SCHEMA_VERSION)
    row.update(lost=0, duplicates=0, wasted=0)


def test_dropped_tables_are_recreated_and_kept_runs_survive(tmp_path, request):
    row = figure(request, "results DB with tables dropped", cases=1)
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    store = Store(url)
    store.save_runs(store.experiment_id("exp"), [(spec(0), {"status": "ok"})])
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE driftlab_reports"))
        conn.execute(sa.text("DROP TABLE driftlab_executions"))
    again = Store(url)  # schema_version says 1, but two tables are gone
    again.start_execution("exp", "c", "h", "{}")
    again.save_report("exp", "c", "PASS", {"summary": []})
    assert again.count_runs("exp") == 1, "the runs table was left alone"
    assert len(list(again.iter_reports("exp"))) == 1
    row.update(lost=0, duplicates=0, wasted=0)


def test_foreign_table_with_a_driftlab_name_is_refused_clearly(tmp_path, request):
    row = figure(request, "foreign table named driftlab_runs", cases=1)
    path = tmp_path / "foreign.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE driftlab_runs (id INTEGER PRIMARY KEY, payload TEXT)")
        conn.execute("INSERT INTO driftlab_runs (payload) VALUES ('theirs')")
    with pytest.raises(StoreError) as info:
        Store(f"sqlite:///{path}")
    message = str(info.value)
    assert "driftlab_runs without the columns key" in message and "not made by this driftlab" in message
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT payload FROM driftlab_runs").fetchall() == [("theirs",)], "their data untouched"
    row.update(lost=0, duplicates=0, wasted=0)


def test_garbage_schema_version_is_refused_clearly(tmp_path):
    path = tmp_path / "r.sqlite"
    Store(f"sqlite:///{path}").engine.dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE driftlab_meta SET value = 'banana' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema_version 'banana' that is not a number"):
        Store(f"sqlite:///{path}")


def test_foreign_application_database_keeps_its_tables(tmp_path):
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('alice')")
    store = Store(f"sqlite:///{path}")  # driftlab's tables beside theirs, as beside Optuna's
    store.save_runs(store.experiment_id("exp"), [(spec(0), {"status": "ok"})])
    store.engine.dispose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM users").fetchall() == [("alice",)]


def test_driftlab_run_on_a_foreign_database_is_refused_before_any_work(tmp_path, monkeypatch, capsys, request):
    row = figure(request, "`driftlab run` on a foreign/corrupt results DB", cases=2)
    config = tmp_path / "exp.yaml"
    config.write_text("name: exp\ndataset: {name: digits}\nseeds: {repeats: 1, deterministic: [true]}\n"
                      "profiles: {pools: [{name: cpu-default}]}\n")
    home = tmp_path / "home"
    monkeypatch.setenv("DRIFTLAB_HOME", str(home))  # restored afterwards: cmd_run sets it for its tasks
    monkeypatch.delenv("DRIFTLAB_JOBS", raising=False)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE driftlab_experiments (title TEXT)")
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"SQLite format 3\0" + b"\xff" * 4000)
    for db, needle in ((foreign, "driftlab_experiments without the columns"),
                       (corrupt, "not a usable results database")):
        monkeypatch.setenv("DRIFTLAB_DB_URL", f"sqlite:///{db}")
        assert cli.main(["run", str(config), "--home", str(home)]) == cli.EXIT_BAD_INPUT
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err
    assert not (home / "logs").exists() and not (home / "kfp").exists(), "no pipeline task started"
    row.update(lost=0, duplicates=0, wasted=0)
