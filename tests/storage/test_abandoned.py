"""Executions whose process died are marked ``abandoned`` with their last sign of life (SQLite and PostgreSQL).

The end-to-end case SIGKILLs a real ``driftlab run`` process group halfway and runs
it again; the control keeps a live execution (a stage running in another process)
``running``. The rest pins each rule: a dead or reused pid, silence past the
threshold on another machine, the heartbeat, idempotent inserts, the in-place
upgrade of a version-2 database, the listing.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from driftlab.errors import BadInput
from driftlab.report.history import utc_text
from driftlab.storage import owner
from driftlab.storage.store import SCHEMA_VERSION, Store
from support.faults import figure, kill_group, wait_for

UTC = dt.timezone.utc
RUN_TIMEOUT_S = 600

CONFIG = """\
name: abandon
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: mlp, epochs: 2, batch_size: 64, hyperparameters: {units: 8}}
seeds: {init: [0, 1, 2, 3, 4, 5], shuffle: [0], split: [0], repeats: 1, deterministic: [true]}
profiles: {reference: cpu-default, pools: [{name: cpu-default}]}
"""
PLANNED = 6


def executions(url: str) -> list[SimpleNamespace]:
    """Every row of driftlab_executions, read with plain SQL; times typed, naive ones taken as UTC."""
    query = sa.text("SELECT id, campaign, status, started_at, finished_at, last_seen, owner_host, owner_pid, "
                    "owner_start FROM driftlab_executions ORDER BY id").columns(
        started_at=sa.DateTime(timezone=True), finished_at=sa.DateTime(timezone=True),
        last_seen=sa.DateTime(timezone=True))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = [r._asdict() for r in conn.execute(query)]
    finally:
        engine.dispose()
    for row in rows:
        for key in ("started_at", "finished_at", "last_seen"):
            if row[key] is not None and row[key].tzinfo is None:
                row[key] = row[key].replace(tzinfo=UTC)
    return [SimpleNamespace(**r) for r in rows]


def set_owner(url: str, execution: int, **values) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            assignments = ", ".join(f"{k} = :{k}" for k in values)
            conn.execute(sa.text(f"UPDATE driftlab_executions SET {assignments} WHERE id = :id"),
                         {**values, "id": execution})
    finally:
        engine.dispose()


def ended_process() -> tuple[int, str]:
    """The pid and recorded start of a process of this machine that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    me = owner.this_process()
    ticks = owner._stat(proc.pid)[1]
    proc.wait()
    return proc.pid, f"{me.start.rpartition('@')[0]}@{ticks}"


def status_of(url: str, execution: int) -> SimpleNamespace:
    return next(r for r in executions(url) if r.id == execution)


@pytest.fixture
def store(database_url):
    return Store(database_url)


# -- the rules --------------------------------------------------------------------------------------------------
def test_owner_state_tells_a_live_a_dead_and_a_reused_pid_apart():
    me = owner.this_process()
    assert me.start and owner.state(me.host, me.pid, me.start) == owner.ALIVE
    pid, start = ended_process()
    assert owner.state(me.host, pid, start) == owner.DEAD, "an exited process"
    machine = me.start.rpartition("@")[0]
    assert owner.state(me.host, me.pid, f"{machine}@1") == owner.DEAD, "this pid, started at another time"
    assert owner.state("another-host", me.pid, me.start) == owner.UNKNOWN, "another machine cannot be judged"
    assert owner.state(me.host, me.pid, f"other-boot:ns@{me.start.rpartition('@')[2]}") == owner.UNKNOWN


def test_a_dead_owner_is_abandoned_at_once_keeping_its_last_sign_of_life(store, database_url):
    live = store.start_execution("exp", "c", "h", "{}")
    dead = store.start_execution("exp", "c", "h", "{}")
    pid, start = ended_process()
    last_seen = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(seconds=30)
    set_owner(database_url, dead, owner_pid=pid, owner_start=start, last_seen=last_seen)
    marked = store.mark_abandoned()
    assert [m["id"] for m in marked] == [dead] and "is gone" in marked[0]["reason"]
    row = status_of(database_url, dead)
    assert row.status == "abandoned" and row.last_seen == last_seen and row.finished_at == last_seen
    assert status_of(database_url, live).status == "running", "control: this process's execution stays running"
    assert store.mark_abandoned() == [], "marking is done once"


@pytest.mark.parametrize("silent_s, abandoned", [(55, False), (65, True)], ids=["just-under", "past"])
def test_silence_on_another_machine_abandons_past_the_threshold_only(store, database_url, monkeypatch, silent_s,
                                                                     abandoned):
    monkeypatch.setenv("DRIFTLAB_EXECUTION_STALE_S", "60")
    execution = store.start_execution("exp", "c", "h", "{}")
    seen = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(seconds=silent_s)
    set_owner(database_url, execution, owner_host="another-host", last_seen=seen)
    store.start_execution("exp", "c2", "h", "{}")  # the next run's start is where the sweep happens
    row = status_of(database_url, execution)
    assert row.status == ("abandoned" if abandoned else "running")
    assert row.last_seen == seen, "the last sign of life is kept as it was"


def test_the_stale_setting_is_checked(store, monkeypatch):
    for bad in ("abc", "0", "-5"):
        monkeypatch.setenv("DRIFTLAB_EXECUTION_STALE_S", bad)
        with pytest.raises(BadInput, match="DRIFTLAB_EXECUTION_STALE_S: .* is not a positive whole number"):
            store.start_execution("exp", "c", "h", "{}")
    monkeypatch.setenv("DRIFTLAB_EXECUTION_STALE_S", "1")  # control: the smallest valid value is accepted
    assert store.start_execution("exp", "c", "h", "{}") > 0
    assert owner.heartbeat_every() == owner.MIN_HEARTBEAT_S
    monkeypatch.delenv("DRIFTLAB_EXECUTION_STALE_S")
    assert owner.stale_after() == 900 and owner.heartbeat_every() == owner.MAX_HEARTBEAT_S


def test_the_heartbeat_refreshes_the_sign_of_life_and_revives_a_mistaken_abandonment(store, database_url):
    execution = store.start_execution("exp", "c", "h", "{}")
    first = status_of(database_url, execution).last_seen
    with owner.Heartbeat(lambda: store.touch_execution(execution), every=0.05):
        wait_for(lambda: status_of(database_url, execution).last_seen > first, 10, "a heartbeat")
    set_owner(database_url, execution, status="abandoned", finished_at=first)
    store.touch_execution(execution)
    row = status_of(database_url, execution)
    assert row.status == "running" and row.finished_at is None, "its owner is alive after all"
    store.finish_execution(execution, "succeeded")
    store.touch_execution(execution)
    assert status_of(database_url, execution).status == "succeeded", "a finished execution is never revived"


def test_a_retried_insert_whose_reply_was_lost_records_one_row(store, database_url, monkeypatch):
    def reply_lost_once(self, what, attempt):
        attempt()  # committed, but the reply never arrived: db.retrying runs it again
        return attempt()

    monkeypatch.setattr(Store, "_retrying", reply_lost_once)
    execution = store.start_execution("exp", "c", "h", "{}")
    report = store.save_report("exp", "c", "PASS", {"summary": []})
    assert [r.id for r in executions(database_url)] == [execution]
    assert [r["id"] for r in store.iter_reports("exp")] == [report]
    store.start_execution("exp", "c", "h", "{}")  # control: a second execution is a second row
    store.save_report("exp", "c", "PASS", {"summary": []})
    assert len(executions(database_url)) == 2 and len(list(store.iter_reports("exp"))) == 2


def test_executions_ahead_are_the_earlier_running_ones_of_the_same_campaign(store, database_url):
    first = store.start_execution("exp", "c", "h", "{}")
    store.start_execution("exp", "other", "h", "{}")
    second = store.start_execution("exp", "c", "h", "{}")
    assert [r["id"] for r in store.executions_ahead(second)] == [first]
    assert store.executions_ahead(first) == [], "nothing runs before the first"
    pid, start = ended_process()
    set_owner(database_url, first, owner_pid=pid, owner_start=start)
    assert store.executions_ahead(second) == [], "a dead earlier run is not waited for"
    assert status_of(database_url, first).status == "abandoned"


def test_a_version_2_database_upgrades_in_place_keeping_its_rows(database_url):
    store = Store(database_url)
    started = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(hours=2)
    store.start_execution("exp", "c", "h", "{}")
    store.save_report("exp", "c", "PASS", {"summary": ["kept"]})
    with store.engine.begin() as conn:  # make it look like a version-2 database
        for index in ("ux_driftlab_executions_request", "ux_driftlab_reports_request", "ix_driftlab_runs_scan"):
            conn.execute(sa.text(f"DROP INDEX {index}"))
        for table, columns in (("driftlab_executions", ("last_seen", "owner_host", "owner_pid", "owner_start",
                                                        "request_id")), ("driftlab_reports", ("request_id",))):
            for column in columns:
                conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(sa.text("UPDATE driftlab_executions SET started_at = :t"), {"t": started})
        conn.execute(sa.text("UPDATE driftlab_meta SET value = '2' WHERE key = 'schema_version'"))
    store.engine.dispose()

    upgraded = Store(database_url)
    with upgraded.engine.connect() as conn:
        inspector = sa.inspect(conn)
        assert {"last_seen", "owner_host", "owner_pid", "owner_start", "request_id"} <= {
            c["name"] for c in inspector.get_columns("driftlab_executions")}
        assert "ux_driftlab_reports_request" in {ix["name"] for ix in inspector.get_indexes("driftlab_reports")}
        assert "ix_driftlab_runs_scan" in {ix["name"] for ix in inspector.get_indexes("driftlab_runs")}
        version = conn.execute(sa.text("SELECT value FROM driftlab_meta WHERE key = 'schema_version'")).scalar_one()
    assert version == str(SCHEMA_VERSION) == "3"
    assert [r["report"] for r in upgraded.iter_reports("exp")] == [{"summary": ["kept"]}], "rows kept"
    [old] = executions(database_url)
    assert old.status == "running" and old.owner_host is None
    upgraded.start_execution("exp", "c", "h", "{}")  # its owner was never recorded: judged by its age
    old = status_of(database_url, old.id)
    assert old.status == "abandoned" and old.last_seen == started, "a version-2 row's last sign is its start"
    assert len(executions(database_url)) == 2


def test_report_history_lists_an_abandoned_execution_with_its_last_sign_of_life(store, database_url,
                                                                                 monkeypatch, capsys):
    from driftlab import cli

    gone = store.start_execution("exp", "c", "h", "{}")
    done = store.start_execution("exp", "c2", "h", "{}")
    store.finish_execution(done, "succeeded")
    pid, start = ended_process()
    seen = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(seconds=5)
    set_owner(database_url, gone, owner_pid=pid, owner_start=start, last_seen=seen)
    monkeypatch.setenv("DRIFTLAB_DB_URL", database_url)
    assert cli.main(["report", "history"]) == 0
    out = capsys.readouterr().out
    assert f"| {gone} | " in out and f"abandoned (last seen {utc_text(seen)})" in out, out
    assert f"| {done} | " in out and "| succeeded |" in out, "control: a finished execution reads as it ended"


# -- end to end -----------------------------------------------------------------------------------------------
def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DRIFTLAB_WHERE", "DRIFTLAB_EXECUTION_STALE_S")}
    return {**env, "DRIFTLAB_DB_URL": database_url, "DRIFTLAB_JOBS": "1", **extra}


# End to end on the local default (SQLite); the marking itself runs on both storages above.
@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_killed_run_is_abandoned_by_the_next_run_which_finishes(database_url, tmp_path, request, monkeypatch,
                                                                 capsys):
    row = figure(request, "`driftlab run` SIGKILLed mid-run: the next run marks it abandoned", cases=1)
    config = tmp_path / "abandon.yaml"
    config.write_text(CONFIG)
    argv = [sys.executable, "-m", "driftlab", "run", str(config), "--home", str(tmp_path / "home")]
    store = Store(database_url)
    # A 5 s threshold makes the killed run beat every second: its last sign of life lies after its start.
    first = subprocess.Popen(argv, env=_env(database_url, DRIFTLAB_EXECUTION_STALE_S="5"), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(lambda: store.count_runs("abandon") >= 1 or first.poll() is not None, RUN_TIMEOUT_S,
                 "the first recorded run")
        assert first.poll() is None, f"the run ended before it could be killed: {first.stdout.read()[-2000:]}"
        killed_at = dt.datetime.now(UTC)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        kill_group(first)
    recorded = store.count_runs("abandon")
    assert 1 <= recorded < PLANNED, "control: the first run was cut short"
    [killed] = executions(database_url)
    assert killed.status == "running", "nothing marks it while no one looks"

    t0 = time.monotonic()
    second = subprocess.run(argv, env=_env(database_url), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    seconds = time.monotonic() - t0
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    killed_row, finished = executions(database_url)
    assert killed_row.id == killed.id and killed_row.status == "abandoned"
    assert killed_row.started_at < killed_row.last_seen <= killed_at, (killed_row, killed_at)
    assert killed_row.finished_at == killed_row.last_seen
    assert finished.status == "succeeded" and finished.started_at > killed_at
    assert f"abandoned: execution {killed.id}" in second.stdout and "is gone" in second.stdout, second.stdout[-2000:]
    assert "waiting" not in second.stdout, "a dead run is not waited for"
    assert store.count_runs("abandon") == PLANNED, "the runs the killed one recorded are kept, the rest trained"

    monkeypatch.setenv("DRIFTLAB_DB_URL", database_url)
    from driftlab import cli

    assert cli.main(["report", "history"]) == 0
    out = capsys.readouterr().out
    assert f"abandoned (last seen {utc_text(killed_row.last_seen)})" in out, out
    row.update(lost=0, duplicates=0, wasted=0, recover_s=round(seconds, 1))


LIVE_STAGE = """
import sys
from driftlab import stages
from driftlab.storage.store import Store
execution = Store(sys.argv[2]).start_execution("abandon", "live", "h", "{}")
print(f"EXECUTION {execution}", flush=True)
stages.retrain_seeds(open(sys.argv[1]).read(), "live", {}, jobs=1, quiet=True)
"""


@pytest.mark.slow
def test_a_live_execution_in_another_process_is_not_abandoned(database_url, tmp_path):
    config = tmp_path / "abandon.yaml"
    config.write_text(CONFIG)
    store = Store(database_url)
    stage = subprocess.Popen([sys.executable, "-c", LIVE_STAGE, str(config), database_url],
                             env=_env(database_url, DRIFTLAB_HOME=str(tmp_path / "home")), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        line = stage.stdout.readline()
        assert line.startswith("EXECUTION "), line
        live = int(line.split()[1])
        wait_for(lambda: store.count_runs("abandon") >= 1 or stage.poll() is not None, RUN_TIMEOUT_S,
                 "the stage's first run")
        store.start_execution("abandon", "next", "h", "{}")  # what the next `driftlab run` does first
        assert store.mark_abandoned() == []
        assert stage.poll() is None, "control: the stage was still running while it was judged"
        assert status_of(database_url, live).status == "running", "a live stage's execution is left alone"
        os.killpg(stage.pid, signal.SIGKILL)
        stage.wait(timeout=60)
    finally:
        kill_group(stage)
    marked = store.mark_abandoned()  # control: the same check marks it once its process is gone
    assert [m["id"] for m in marked] == [live] and status_of(database_url, live).status == "abandoned"
