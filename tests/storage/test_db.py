"""driftlab.storage.db: the one database module (URLs, masking, engines, the retry loop)."""

from __future__ import annotations

import pickle

import pytest
import sqlalchemy as sa

from driftlab.storage import db


# -- normalisation ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("given, expected", [
    ("postgresql://u:pw@h:5432/db", "postgresql+psycopg2://u:pw@h:5432/db"),
    ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
    ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
    ("sqlite:////tmp/x.sqlite", "sqlite:////tmp/x.sqlite"),
    ("mysql+pymysql://u@h/db", "mysql+pymysql://u@h/db"),
])
def test_normalize_url_pins_psycopg2(given, expected):
    assert db.normalize_url(given) == expected


def test_the_tuning_layer_normalises_with_the_same_function():
    from driftlab.tuning.commands import parse_storage

    assert parse_storage("postgres://u:pw@h/db").target == "postgresql+psycopg2://u:pw@h/db"


# -- masking ------------------------------------------------------------------------------------------------------
SECRET = "s3cr3t-Pw"


@pytest.mark.parametrize("url, shown", [
    (f"postgresql+psycopg2://driftlab:{SECRET}@db.example:5432/driftlab",
     "postgresql+psycopg2://driftlab:***@db.example:5432/driftlab"),
    (f"postgresql://user@host/db?password={SECRET}&sslmode=require",
     "postgresql://user@host/db?password=***&sslmode=require"),
    (f"postgresql://user@host/db?sslmode=require&sslpassword={SECRET}",
     "postgresql://user@host/db?sslmode=require&sslpassword=***"),
    (f"host=h dbname=d password={SECRET} user=u", "host=h dbname=d password=*** user=u"),
    (f"host=h dbname=d password = '{SECRET} with \\' space' port=5432", "host=h dbname=d password = *** port=5432"),
], ids=["userinfo", "query-parameter", "query-sslpassword", "dsn-key", "dsn-quoted"])
def test_safe_url_masks_every_credential_form(url, shown):
    assert db.safe_url(url) == shown
    assert SECRET not in db.safe_url(url)


@pytest.mark.parametrize("url", [
    f"postgresql://u:{SECRET}@h:5432/db?password={SECRET}2",  # both places
    f"postgresql://u:p@{SECRET}@h/db",       # unencoded @ in the password
    f"postgresql://u:{SECRET}/x@h/db",       # unencoded /
    f"postgresql://u:{SECRET}?x@h/db",       # unencoded ?
    f"postgresql://u:{SECRET}#x@h/db",       # unencoded #
    f"postgresql://u:{SECRET}@h:notaport/db",  # a port SQLAlchemy cannot read
    f"postgresql://u:{SECRET}",              # host forgotten: the password sits where a port goes
    f"postgresql://u:{SECRET}/db",
    f"postgresql://u:{SECRET.replace('-', '%2D')}@h/db",  # percent-encoded
    f"  postgresql://u:{SECRET}@h/db\n",
    f"host=h password='{SECRET} never closed",
    f"u:{SECRET}@host/db",                   # no scheme, not a DSN
    f"{SECRET}",
    f"://u:{SECRET}@h",
    f"postgresql://[::1]:{SECRET}/db",
])
def test_safe_url_never_shows_the_password_of_a_malformed_url(url):
    shown = db.safe_url(url)
    assert SECRET not in shown and SECRET.replace("-", "%2D") not in shown, shown
    assert "\n" not in shown


def test_safe_url_keeps_what_holds_no_password():
    for url in ("sqlite:////home/a@b/x.sqlite", "sqlite:///rel.sqlite", "postgresql://h1:5432,h2:5433/db",
                "postgresql://[::1]:5432/db", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"):
        assert db.safe_url(url) == url
    assert db.safe_url("not a url") == db.UNPARSEABLE


def test_mask_secrets_scrubs_error_text_without_garbling_it():
    url = f"postgresql://u:{SECRET}@h/db"
    assert db.mask_secrets(f"could not connect with {SECRET}", url) == "could not connect with ***"
    assert db.mask_secrets("invalid literal for int() with base 10: 'pw'", "postgresql://u:pw") == \
        "invalid literal for int() with base 10: '***'"
    assert db.mask_secrets("password authentication failed", "postgresql://u:pw@h/db") == \
        "password authentication failed"


def test_store_and_tuning_show_urls_through_safe_url():
    from driftlab.storage import store
    from driftlab.tuning.commands import StorageRef

    assert store.safe_url is db.safe_url
    assert StorageRef("rdb", f"postgresql+psycopg2://u@h/db?password={SECRET}").shown == \
        "postgresql+psycopg2://u@h/db?password=***"


# -- where ------------------------------------------------------------------------------------------------------
def test_fallbacks_differ_only_by_role(tmp_path, monkeypatch):
    monkeypatch.delenv("DRIFTLAB_DB_URL", raising=False)
    monkeypatch.delenv("DRIFTLAB_HOME", raising=False)
    home = (tmp_path / "h").resolve()
    assert db.database_url(local_dir_=home) == f"sqlite:///{home / 'driftlab.sqlite'}"
    assert db.database_url(local_dir_=home, role=db.STUDY) == f"journal://{home / 'optuna-journal.log'}"
    assert home.is_dir(), "the default's folder is created"
    monkeypatch.setenv("DRIFTLAB_HOME", str(tmp_path / "over"))
    assert db.database_url(local_dir_=home) == f"sqlite:///{(tmp_path / 'over').resolve() / 'driftlab.sqlite'}"
    monkeypatch.setenv("MY_DB", "  postgresql://u:pw@h/db ")
    for role in (db.RESULTS, db.STUDY):
        assert db.database_url("MY_DB", home, role=role) == "postgresql://u:pw@h/db"


def test_results_store_and_study_storage_read_the_same_variable(tmp_path, monkeypatch):
    from driftlab.config import load_config_text
    from driftlab.storage.store import database_url as store_database_url
    from driftlab.tuning import storage as tuning_storage
    from support.tuning import experiment_text

    assert store_database_url is db.database_url
    monkeypatch.setenv("DRIFTLAB_HOME", str(tmp_path))
    monkeypatch.delenv("DRIFTLAB_DB_URL", raising=False)
    config = load_config_text(experiment_text(3), "experiment")
    ref = tuning_storage.storage_ref(config)
    assert ref.kind == "journal" and ref.target == str(tmp_path.resolve() / "optuna-journal.log")
    assert tuning_storage.journal_path(config) == db.local_path(config.storage.local_dir, db.STUDY)
    monkeypatch.setenv("DRIFTLAB_DB_URL", "postgres://u:pw@h/db")
    ref = tuning_storage.storage_ref(config)
    assert ref.kind == "rdb" and ref.target == "postgresql+psycopg2://u:pw@h/db"


# -- transient errors and the retry loop --------------------------------------------------------------------------
def _lost() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused\nDETAIL: more"))


def _sqlite_error() -> sa.exc.OperationalError:
    import sqlite3

    return sa.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("no such table: x"))


def test_is_transient_follows_the_cause_chain():
    import optuna

    assert db.is_transient(_lost())
    assert not db.is_transient(_sqlite_error()), "an SQLite OperationalError is a real problem"
    assert not db.is_transient(ValueError("x"))
    try:
        try:
            raise _lost()
        except sa.exc.OperationalError as exc:
            raise optuna.exceptions.StorageInternalError("wrapped") from exc
    except optuna.exceptions.StorageInternalError as wrapped:
        assert db.is_transient(wrapped), "Optuna's wrapper of a lost connection"
    try:
        try:
            raise _lost()
        except sa.exc.OperationalError:
            raise db.StoreError("a deliberate error") from None
    except db.StoreError as hidden:
        assert not db.is_transient(hidden), "raise ... from None is not an outage"


class FakeClock:
    """Stands in for the ``time`` module inside db: sleeping advances the clock at once."""

    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


def test_retrying_waits_out_a_transient_error_and_says_so_twice(monkeypatch, capsys):
    clock = FakeClock()
    monkeypatch.setattr(db, "time", clock)
    monkeypatch.delenv("DRIFTLAB_DB_RETRY_S", raising=False)
    calls, resets = [], []

    def attempt() -> str:
        calls.append(1)
        if len(calls) < 8:
            raise _lost()
        return "done"

    assert db.retrying(attempt, "recording runs", url="postgresql://u:pw@h/db",
                       reset=lambda: resets.append(1)) == "done"
    assert clock.sleeps == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0], "0.25 s doubling to 5 s"
    assert len(resets) == 7
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["[driftlab] results database unreachable while recording runs (connection refused); "
                   "retrying for up to 120 s",
                   "[driftlab] results database reachable again after 17.8 s"]


def test_retrying_gives_up_after_the_window_with_one_line(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(db, "time", clock)
    monkeypatch.setenv("DRIFTLAB_DB_RETRY_S", "30")

    def attempt():
        raise _lost()

    with pytest.raises(db.StoreError) as info:
        db.retrying(attempt, "recording runs", url=f"postgresql://u:{SECRET}@h/db")
    message = str(info.value)
    assert isinstance(info.value, db.DatabaseUnreachable) and info.value.reason == "connection refused"
    assert message == ("the results database postgresql://u:***@h/db was unreachable for 30 s while recording runs "
                       "(connection refused); runs recorded so far are kept: run the same stage again to resume "
                       "(wait longer with DRIFTLAB_DB_RETRY_S)")
    assert 30.0 <= clock.now - 1000.0 <= 30.5 and max(clock.sleeps) == 5.0
    again = pickle.loads(pickle.dumps(info.value))  # crosses process boundaries intact
    assert str(again) == message and again.reason == "connection refused" and again.window == 30.0
    with pytest.raises(db.StoreError, match="^the Optuna study database was unreachable for 30 s while reading"):
        db.retrying(attempt, "reading", url=None, role=db.STUDY)


def test_retrying_raises_a_real_error_at_once(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(db, "time", clock)
    for error in (ValueError("bad"), _sqlite_error()):
        def attempt():
            raise error

        with pytest.raises(type(error)):
            db.retrying(attempt, "x", url="sqlite:///x")
    assert clock.sleeps == []


def test_retrying_with_no_window_tries_once(monkeypatch):
    monkeypatch.setenv("DRIFTLAB_DB_RETRY_S", "0")
    calls = []

    def attempt():
        calls.append(1)
        raise _lost()

    with pytest.raises(db.DatabaseUnreachable, match="unreachable for 0 s"):
        db.retrying(attempt, "x", url=None)
    assert calls == [1]


def test_retry_window(monkeypatch):
    for raw, window in (("", 120.0), ("7.5", 7.5), ("-3", 0.0), ("soon", 120.0)):
        monkeypatch.setenv("DRIFTLAB_DB_RETRY_S", raw)
        assert db.retry_window() == window


# -- one engine factory -------------------------------------------------------------------------------------------
def test_engine_kwargs():
    pg = db.engine_kwargs("postgresql://u@h/db")
    assert pg["pool_pre_ping"] is True and pg["pool_size"] == db.POOL_SIZE
    assert pg["max_overflow"] == db.POOL_MAX_OVERFLOW and pg["pool_recycle"] == db.POOL_RECYCLE_S
    assert pg["connect_args"]["connect_timeout"] == 10 and pg["connect_args"]["keepalives"] == 1
    lite = db.engine_kwargs("sqlite:////tmp/x.sqlite")
    assert lite == {"pool_pre_ping": True, "connect_args": {"timeout": db.SQLITE_TIMEOUT_S}}
    engine = db.make_engine("postgresql://u@h/db")  # lazy: no connection is made
    assert engine.url.drivername == "postgresql+psycopg2"
    assert engine.pool.size() == db.POOL_SIZE and engine.pool._pre_ping is True
    engine.dispose()


def test_make_engine_sets_sqlite_pragmas_only_where_asked(tmp_path):
    written = db.make_engine(f"sqlite:///{tmp_path / 'w.sqlite'}")
    read = db.make_engine(f"sqlite:///{tmp_path / 'r.sqlite'}", sqlite_wal=False)
    with written.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    with read.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
    written.dispose()
    read.dispose()


def _pool_settings(engine) -> dict:
    pool = engine.pool
    return {"class": type(pool).__name__, "pre_ping": pool._pre_ping, "recycle": pool._recycle,
            "size": pool.size() if hasattr(pool, "size") else None,
            "overflow": getattr(pool, "_max_overflow", None), "timeout": getattr(pool, "_timeout", None)}


def _store_and_study_storage(url: str, tmp_path, monkeypatch):
    from driftlab.config import load_config_text
    from driftlab.storage.store import Store
    from driftlab.tuning.storage import storage_for
    from support.tuning import experiment_text

    monkeypatch.setenv("DRIFTLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DRIFTLAB_DB_URL", url)
    store = Store.from_config(load_config_text(experiment_text(3), "experiment"))
    storage = storage_for(load_config_text(experiment_text(3), "experiment"))
    return store, storage


def test_store_and_study_storage_get_their_engine_from_one_factory_sqlite(tmp_path, monkeypatch):
    store, storage = _store_and_study_storage(f"sqlite:///{tmp_path / 'both.sqlite'}", tmp_path, monkeypatch)
    assert storage.engine_kwargs == db.engine_kwargs(store.url)
    assert _pool_settings(storage.engine) == _pool_settings(store.engine)
    store.engine.dispose()
    storage.engine.dispose()


@pytest.mark.db
def test_store_and_study_storage_get_their_engine_from_one_factory_postgres(pg_url, tmp_path, monkeypatch):
    store, storage = _store_and_study_storage(pg_url.replace("postgresql+psycopg2://", "postgresql://"),
                                              tmp_path, monkeypatch)
    assert storage.engine_kwargs == db.engine_kwargs(store.url)
    settings = _pool_settings(store.engine)
    assert settings == _pool_settings(storage.engine)
    assert settings["size"] == db.POOL_SIZE and settings["pre_ping"] is True
    assert settings["recycle"] == db.POOL_RECYCLE_S and settings["overflow"] == db.POOL_MAX_OVERFLOW
    assert store.engine.url.drivername == storage.engine.url.drivername == "postgresql+psycopg2"
    store.engine.dispose()
    storage.scoped_session.remove()
    storage.engine.dispose()
