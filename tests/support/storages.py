"""The database backends every store and resume test runs against, like ``optuna.testing.storages``.

``STORAGES`` parametrizes a test over SQLite and the real PostgreSQL server (marked ``db``);
``supply(mode, tmp_path)`` gives a fresh, empty database of that kind and drops it afterwards.
conftest.py turns it into the ``database_url`` fixture.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

PG_URL = os.environ.get("DRIFTLAB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
STORAGES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.db)]


@contextmanager
def supply(mode: str, tmp_path: Path) -> Iterator[str]:
    """A fresh results database URL: a new SQLite file, or a scratch PostgreSQL database."""
    if mode == "sqlite":
        yield f"sqlite:///{tmp_path / 'results.sqlite'}"
        return
    if mode != "postgresql":
        raise ValueError(f"storage mode {mode!r}: use sqlite or postgresql")
    from support.faults import scratch_database

    with scratch_database() as url:
        yield url
