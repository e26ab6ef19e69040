"""The results database goes away while a retrain stage runs: connections killed, server unreachable.

The stage is a real process (``stages.retrain_seeds`` with a worker training
Keras runs) whose ``DRIFTLAB_DB_URL`` points at a TCP proxy in front of the
real PostgreSQL server; stopping the proxy refuses new connections and cuts
the open ones, as a server restart or a network partition does (the shared
server itself is never stopped). Three faults, in turn:

1. ``pg_terminate_backend`` of the stage's connections: survived silently;
2. an outage longer than the retry window (``DRIFTLAB_DB_RETRY_S``): the
   stage stops with a clear message and every run recorded before is kept;
3. a short outage during the re-run: it says it waits, goes on, and trains
   exactly the runs the first attempt did not record.

The database role has a password; it must not appear in anything the stage prints.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from driftlab.runs.spec import RunSpec
from support.factories import run_spec
from driftlab.storage.store import Store, StoreError
from support.faults import (
    TcpProxy,
    figure,
    kill_group,
    run_counts,
    scratch_database,
    start_stage,
    summary_of,
    terminate_backends,
    test_password,
    wait_for,
)

PLAN_RUNS = 8
OK = {"status": "ok", "metrics": {"eval_accuracy": 0.5}}
RETRY_WINDOW_S = 8  # DRIFTLAB_DB_RETRY_S for the stage: longer than the short outage, shorter than the long one
SHORT_OUTAGE_S = 3
STAGE_TIMEOUT_S = 240

CONFIG = """\
name: outage
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: mlp, epochs: 1, batch_size: 64, hyperparameters: {units: 16}}
seeds: {init: [0, 1, 2, 3], shuffle: [0], split: [0], repeats: 2, deterministic: [true]}
profiles: {reference: cpu-default, pools: [{name: cpu-default}]}
"""


def spec(init_seed: int) -> RunSpec:
    return run_spec(init_seed=init_seed)


def _rows(url: str) -> dict[str, tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {r.key: (r.weights_digest, r.created_at) for r in conn.execute(sa.text(
                "SELECT key, weights_digest, created_at FROM driftlab_runs WHERE status = 'ok'"))}
    except sa.exc.ProgrammingError:
        return {}  # the stage has not created its tables yet
    finally:
        engine.dispose()


@pytest.fixture
def proxied_database():
    password = test_password()
    with scratch_database(password=password) as url:
        proxy = TcpProxy("127.0.0.1", sa.engine.make_url(url).port or 5432)
        proxy.start()
        try:
            yield url, proxy, password
        finally:
            proxy.stop()


@pytest.mark.db
@pytest.mark.slow
def test_stage_rides_out_killed_connections_and_outages_and_resumes_exactly_once(proxied_database, tmp_path,
                                                                                   request):
    url, proxy, password = proxied_database
    database = sa.engine.make_url(url).database
    killed_row = figure(request, "DB connections killed (pg_terminate_backend) mid-stage", cases=1)
    long_row = figure(request, "DB unreachable longer than the retry window; re-run", cases=1)
    short_row = figure(request, f"DB unreachable {SHORT_OUTAGE_S} s mid-stage (proxy stopped)", cases=1)
    config = tmp_path / "outage.yaml"
    config.write_text(CONFIG)
    env = {"DRIFTLAB_DB_URL": proxy.url_for(url), "DRIFTLAB_HOME": str(tmp_path / "home"),
           "DRIFTLAB_DB_RETRY_S": str(RETRY_WINDOW_S), "DRIFTLAB_JOBS": "1"}

    stage = start_stage(config, "c", env)
    try:
        # 1. Kill the stage's connections once it has recorded a run: survived silently.
        wait_for(lambda: len(_rows(url)) >= 1 or stage.poll() is not None, STAGE_TIMEOUT_S, "the first run")
        assert stage.poll() is None, stage.communicate()[1][-3000:]
        assert terminate_backends(database) >= 1, "control: the stage held a connection that was killed"
        # 2. An outage longer than the retry window: the stage must give up cleanly.
        wait_for(lambda: len(_rows(url)) >= 3 or stage.poll() is not None, STAGE_TIMEOUT_S, "three runs")
        assert stage.poll() is None, "the stage finished before the outage (make the plan longer)"
        proxy.stop()
        out, err = stage.communicate(timeout=STAGE_TIMEOUT_S)
    finally:
        kill_group(stage)
    proxy.start()
    assert stage.returncode != 0, "control: the long outage really stopped the stage"
    assert "results database unreachable while recording runs" in err, err[-3000:]
    assert f"was unreachable for {RETRY_WINDOW_S} s while recording runs" in err, err[-3000:]
    assert "run the same stage again to resume" in err
    assert password not in out + err, "the database password leaked into the stage's output"
    kept = _rows(url)
    assert 3 <= len(kept) < PLAN_RUNS, "control: the stage was cut short with runs left to train"

    # 3. The re-run, hit by a short outage of its own: it waits, goes on, and trains exactly the rest.
    t0 = time.monotonic()
    again = start_stage(config, "c", env)
    try:
        wait_for(lambda: len(_rows(url)) > len(kept) or again.poll() is not None, STAGE_TIMEOUT_S,
                 "a run recorded by the re-run")
        assert again.poll() is None, "the re-run finished before its outage"
        proxy.stop()
        time.sleep(SHORT_OUTAGE_S)
        proxy.start()
        seen = len(_rows(url))
        short_recover = wait_for(lambda: len(_rows(url)) > seen or again.poll() is not None, STAGE_TIMEOUT_S,
                                 "a run recorded after the outage")
        out2, err2 = again.communicate(timeout=STAGE_TIMEOUT_S)
    finally:
        kill_group(again)
    resume_s = time.monotonic() - t0
    assert again.returncode == 0, err2[-3000:]
    assert "results database unreachable while recording runs" in err2, "control: the outage hit a write"
    assert "results database reachable again" in err2, err2[-3000:]
    assert password not in out2 + err2
    summary = summary_of(out2)
    assert (summary["skipped"], summary["trained"], summary["failed"]) == (len(kept), PLAN_RUNS - len(kept), 0)
    final = _rows(url)
    counts = run_counts(url, "outage")
    assert counts["rows"] == counts["keys"] == counts["ok"] == PLAN_RUNS and counts["experiment_rows"] == 1
    lost = sum(1 for key, row in kept.items() if final.get(key) != row)
    assert lost == 0, "a run recorded before the outage was lost or rewritten"
    killed_row.update(lost=0, duplicates=0, wasted=0, recover_s=0.0)
    short_row.update(lost=0, duplicates=0, wasted=0, recover_s=short_recover)
    # The stopped stage's runs trained during the long outage were never recorded, so the re-run
    # trained them again; the stopped stage prints no summary, so that waste is not counted here.
    long_row.update(lost=lost, duplicates=counts["rows"] - counts["keys"], recover_s=resume_s,
                    note=f"{len(kept)} of {PLAN_RUNS} runs kept; the re-run trained the other {summary['trained']}")


@pytest.mark.db
def test_store_waits_for_the_database_and_gives_up_with_a_clear_message(proxied_database, monkeypatch, request):
    url, proxy, password = proxied_database
    row = figure(request, "DB unreachable at a write (store level)", cases=2)
    store = Store(proxy.url_for(url))
    exp = store.experiment_id("exp")
    assert store.save_runs(exp, [(spec(init_seed=0), OK)]) == 1

    # Longer than the window: a StoreError that says what to do, without the password.
    monkeypatch.setenv("DRIFTLAB_DB_RETRY_S", "1")
    proxy.stop()
    with pytest.raises(StoreError) as info:
        store.save_runs(exp, [(spec(init_seed=1), OK)])
    assert "was unreachable for 1 s while recording runs" in str(info.value)
    assert password not in str(info.value) and "***" in str(info.value)

    # Back within the window: the same write goes through once.
    monkeypatch.setenv("DRIFTLAB_DB_RETRY_S", "60")
    threading.Timer(1.5, proxy.start).start()
    t0 = time.monotonic()
    assert store.save_runs(exp, [(spec(init_seed=1), OK)]) == 1
    waited = time.monotonic() - t0
    assert waited >= 1.0, "control: the write really waited for the database"
    assert store.count_runs("exp") == 2 and store.done_keys([spec(init_seed=0).key, spec(init_seed=1).key]) == {
        spec(init_seed=0).key, spec(init_seed=1).key}
    store.engine.dispose()
    row.update(lost=0, duplicates=0, wasted=0, recover_s=waited - 1.5)
