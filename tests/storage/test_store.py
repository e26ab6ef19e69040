"""The results store, against SQLite and the real PostgreSQL: keyed, idempotent, versioned."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import numpy as np
import pytest
import sqlalchemy as sa

from driftlab.runs.spec import RunSpec
from support.factories import run_spec
from driftlab.storage.store import SCHEMA_VERSION, Store, StoreError, database_url, safe_url


@pytest.fixture
def store(database_url):
    return Store(database_url)


def spec(**changes) -> RunSpec:
    return run_spec(**{"campaign": "c1", "hparams": {"units": 8}, **changes})


def record(status="ok", value=0.9, **extra):
    rng = np.random.default_rng(int(value * 100))
    return {"status": status, "task": "classification", "metrics": {"eval_accuracy": value},
            "history": {"loss": [1.0, 0.5], "val_metric": [0.8, value]}, "init_digest": "i", "weights_digest": "w",
            "predictions": rng.random((5, 3)).astype(np.float32), "eval_labels": np.arange(5),
            "weights": rng.random(7).astype(np.float32), "weights_kind": "full", "n_params": 7,
            "timings": {"fit_s": 1.0}, "fingerprint": {"cpu_model": "x"}, **extra}


def test_key_is_stable_and_depends_on_every_run_field():
    assert spec().key == spec().key
    assert spec().key == spec(stage="nodes").key, "the stage that asked for a run is not part of its identity"
    for change in ({"init_seed": 1}, {"shuffle_seed": 1}, {"split_seed": 1}, {"repeat": 1},
                   {"deterministic": False}, {"profile": {"name": "other"}}, {"hparams": {"units": 9}},
                   {"campaign": "c2"}, {"data_digest": "e"}):
        assert spec(**change).key != spec().key, change


def test_round_trip_keeps_arrays_exact(store):
    exp = store.experiment_id("exp")
    rec = record()
    assert store.save_runs(exp, [(spec(), rec)]) == 1
    [row] = store.load_runs("exp", "c1")
    assert row["key"] == spec().key and row["profile"] == "cpu-default" and row["deterministic"] is True
    np.testing.assert_array_equal(row["predictions"], rec["predictions"])
    assert row["predictions"].dtype == np.float32
    np.testing.assert_array_equal(row["weights"], rec["weights"])
    assert row["metrics"] == {"eval_accuracy": 0.9} and row["spec"]["init_seed"] == 0


def test_storing_the_same_key_twice_is_a_no_op(store):
    exp = store.experiment_id("exp")
    store.save_runs(exp, [(spec(), record(value=0.9))])
    assert store.save_runs(exp, [(spec(), record(value=0.1))]) == 0
    [row] = store.load_runs("exp")
    assert row["metrics"]["eval_accuracy"] == 0.9, "a finished run is never overwritten"
    assert store.count_runs("exp") == 1


def test_failed_attempt_is_replaced_by_a_finished_one(store):
    exp = store.experiment_id("exp")
    store.save_runs(exp, [(spec(), {"status": "failed", "error": "worker died"})])
    assert store.done_keys([spec().key]) == set(), "a failed run must be retried"
    store.save_runs(exp, [(spec(), record())])
    assert store.done_keys([spec().key]) == {spec().key}
    [row] = store.load_runs("exp")
    assert row["status"] == "ok" and row["error"] is None


def test_done_keys_in_chunks(store):
    exp = store.experiment_id("exp")
    specs = [spec(init_seed=i) for i in range(1200)]
    store.save_runs(exp, [(s, {"status": "ok"}) for s in specs[::2]])
    assert store.done_keys(s.key for s in specs) == {s.key for s in specs[::2]}


def test_experiments_are_unique_by_name(store):
    assert store.experiment_id("a") == store.experiment_id("a") != store.experiment_id("b")


def execution_row(store, execution_id: int) -> SimpleNamespace:
    """One row of driftlab_executions, read back with plain SQL (timestamps typed, naive ones taken as UTC)."""
    query = sa.text(
        "SELECT e.name AS experiment, x.campaign, x.config_hash, x.config_json, x.status, x.started_at, "
        "x.finished_at FROM driftlab_executions x JOIN driftlab_experiments e ON e.id = x.experiment_id "
        "WHERE x.id = :id").columns(started_at=sa.DateTime(timezone=True), finished_at=sa.DateTime(timezone=True))
    with store.engine.connect() as conn:
        row = conn.execute(query, {"id": execution_id}).one()._asdict()
    for key in ("started_at", "finished_at"):
        if row[key] is not None and row[key].tzinfo is None:  # SQLite keeps no zone; the store writes UTC
            row[key] = row[key].replace(tzinfo=dt.timezone.utc)
    return SimpleNamespace(**row)


def test_reports_and_executions(store):
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)  # slack for the stored precision
    execution = store.start_execution("exp", "c1", "h", '{"name": "exp"}')
    started = execution_row(store, execution)
    assert (started.experiment, started.campaign, started.config_hash, started.config_json, started.status) == (
        "exp", "c1", "h", '{"name": "exp"}', "running")
    assert started.finished_at is None and started.started_at >= before
    other = store.start_execution("exp", "c2", "h2", "{}")
    assert other != execution
    store.finish_execution(execution, "succeeded")
    store.finish_execution(other, "failed")
    after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    done = execution_row(store, execution)
    assert (done.experiment, done.campaign, done.config_hash, done.status) == ("exp", "c1", "h", "succeeded")
    assert done.started_at == started.started_at, "finishing an execution leaves its start alone"
    assert before <= done.started_at <= done.finished_at <= after
    failed = execution_row(store, other)
    assert (failed.campaign, failed.config_hash, failed.status) == ("c2", "h2", "failed")
    assert done.started_at <= failed.started_at <= failed.finished_at <= after
    store.save_report("exp", "c1", "PASS", {"summary": ["<script>alert(1)</script>"]})
    [rep] = list(store.iter_reports("exp"))
    assert rep["gate"] == "PASS" and rep["report"]["summary"] == ["<script>alert(1)</script>"]


def test_sql_looking_names_are_stored_as_data(store):
    name = "x'); DROP TABLE driftlab_runs; --"
    exp = store.experiment_id(name)
    store.save_runs(exp, [(spec(experiment=name), record())])
    assert store.count_runs(name) == 1


def test_newer_schema_is_refused_clearly(store):
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE driftlab_meta SET value = :v WHERE key = 'schema_version'"),
                     {"v": str(SCHEMA_VERSION + 1)})
    with pytest.raises(StoreError, match="newer than this driftlab"):
        Store(store.url)


def test_not_a_database_is_refused_clearly(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable results database|cannot open"):
        Store(f"sqlite:///{path}")


def test_password_is_masked_and_url_comes_from_env(monkeypatch, tmp_path):
    url = "postgresql+psycopg2://driftlab:s3cr3t-pw@db.example:5432/driftlab"
    assert "s3cr3t-pw" not in safe_url(url) and "***" in safe_url(url)
    monkeypatch.setenv("DRIFTLAB_DB_URL", url)
    assert database_url() == url
    monkeypatch.delenv("DRIFTLAB_DB_URL")
    monkeypatch.delenv("DRIFTLAB_HOME", raising=False)
    assert database_url(local_dir_=tmp_path).startswith("sqlite:///")


@pytest.mark.db
def test_unreachable_postgres_is_a_clear_error_without_password():
    url = "postgresql+psycopg2://driftlab:s3cr3t-pw@127.0.0.1:1/driftlab"
    with pytest.raises(StoreError) as info:
        Store(url)
    assert "s3cr3t-pw" not in str(info.value) and "cannot open the results database" in str(info.value)
