"""Shared fixtures: a scratch PostgreSQL database, tiny experiment configs, isolated homes."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Started in the background (`nohup`, `&`), the tests would inherit SIGINT ignored and pass it on to every
# process they start, so Ctrl-C sent on purpose (tests/reliability/test_resume.py) would never arrive. A
# handler here gives the processes they start the default again (exec resets handled signals, not ignored ones).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))  # user model builders used by the tests
# ... and for the worker processes the tests start.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(FIXTURES), os.environ.get("PYTHONPATH")) if p)

# Tests run from the repository root, whose docker/ folder (Dockerfiles) would import as an empty
# namespace package and break kfp.local (driftlab needs no Docker SDK): the same guard `driftlab run` uses.
from driftlab.launch.local import hide_docker_folders  # noqa: E402

hide_docker_folders()

from support.storages import PG_URL, STORAGES, supply  # noqa: E402  (tests/ is on sys.path: conftest's folder)


def _admin_connect():
    import psycopg2

    conn = psycopg2.connect(PG_URL, connect_timeout=5)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The real PostgreSQL server's URL; tests marked ``db`` fail loudly if it is down."""
    try:
        _admin_connect().close()
    except Exception as exc:  # pragma: no cover - environment problem, reported clearly
        pytest.fail(f"PostgreSQL at {PG_URL} is not reachable ({exc}); start it with "
                    "`pg_ctlcluster --skip-systemctl-redirect 15 main start`")
    return PG_URL


@pytest.fixture
def pg_url(pg_server_url):
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    name = f"driftlab_t_{uuid.uuid4().hex[:10]}"
    conn = _admin_connect()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = pg_server_url.rsplit("/", 1)[0]
    yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg2://", 1)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    conn.close()


TINY_CONFIG = """\
name: tiny
dataset:
  name: digits
  eval_fraction: 0.25
  val_fraction: 0.2
model:
  builder: mlp
  epochs: 2
  batch_size: 64
  hyperparameters: {units: 16}
search_space:
  learning_rate: {type: float, low: 0.001, high: 0.01, log: true}
tuning: {trials: 2, workers: 2, seed: 0}
seeds:
  init: [0, 1]
  shuffle: [0]
  split: [0]
  repeats: 2
  deterministic: [true]
profiles:
  reference: cpu-default
  pools:
    - name: cpu-default
    - name: cpu-sse41
      isa: SSE41
tolerances:
  max_disagreement: 0.5
"""


@pytest.fixture
def tiny_config_text() -> str:
    return TINY_CONFIG


@pytest.fixture
def tiny_config_file(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An isolated DRIFTLAB_HOME with no database URL from the outside environment."""
    h = tmp_path / "home"
    monkeypatch.setenv("DRIFTLAB_HOME", str(h))
    monkeypatch.delenv("DRIFTLAB_DB_URL", raising=False)
    return h


@pytest.fixture(params=STORAGES)
def database_url(request, tmp_path):
    """A fresh, empty results database: SQLite, then the real PostgreSQL (``db``)."""
    with supply(request.param, tmp_path) as url:
        yield url
