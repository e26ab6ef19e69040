"""The one place driftlab plumbs a database: URL, masking, engine, outages.

Two databases live behind one environment variable (``storage.url_env``,
``DRIFTLAB_DB_URL`` by default): the results store (``storage.store``,
driftlab's ``driftlab_*`` tables) and the Optuna study storage
(``tuning.storage``, Optuna's own schema). Each is a ``DatabaseRole``
(``RESULTS``, ``STUDY``), and the role is the only thing that differs:

* where it lives without the variable: ``database_url(url_env, local_dir,
  role=...)`` returns the variable's value, else the role's local default
  under ``local_dir`` (``DRIFTLAB_HOME`` overrides it): results in
  ``sqlite:///<local_dir>/driftlab.sqlite``; a study in Optuna's journal file,
  ``journal://<local_dir>/optuna-journal.log`` (a journal takes concurrent
  worker processes without "database is locked", see ``tuning.storage``);
* how it is named in messages (``results database``, ``Optuna study
  database``) and what survives an outage that outlasts the retry window.

Everything else is shared, so the two cannot drift apart:

* ``normalize_url``: ``postgresql://`` and ``postgres://`` mean psycopg2, the
  driver driftlab ships (SQLAlchemy 2.1 would pick psycopg 3, not installed).
* ``safe_url`` / ``mask_secrets``: what may be shown to people. Every
  credential form libpq and SQLAlchemy accept is masked: the password in the
  userinfo (``user:***@host``), a ``password=`` (or ``sslpassword=``) query
  parameter, and the ``password=`` key of a libpq DSN (``host=h password=***``).
  The masking is textual, not a parse, so a malformed URL (an unencoded ``@``,
  ``/`` or ``?`` in the password, a bad port) never shows its password either;
  a string that is neither a URL nor a DSN is not shown at all.
* ``engine_kwargs`` / ``make_engine``: one set of engine settings. A
  PostgreSQL pool is small (main thread, Optuna's heartbeat thread, slack),
  pre-pinged (a dead pooled connection is replaced, not used), recycled, and
  its connections time out and keep alive, so a server that vanished is found
  in seconds rather than after the OS's TCP timeout. SQLite waits 60 s for a
  lock. ``make_engine`` (the results store; any engine driftlab opens itself)
  adds WAL and a busy timeout to an SQLite file driftlab writes; Optuna's
  ``RDBStorage`` builds its engine from ``engine_kwargs`` (it takes no engine).
* ``is_transient``: a lost or refused connection, found anywhere in the
  exception's cause chain (Optuna wraps SQLAlchemy's errors in its own). An
  SQLite ``OperationalError`` is a real problem (no such table, not a
  database), never an outage.
* ``retrying``: the one retry loop. A transient error is retried with backoff
  (0.25 s doubling to 5 s) for ``DRIFTLAB_DB_RETRY_S`` seconds (120 by
  default); it says so once on stderr (``[driftlab] results database
  unreachable while recording runs (<reason>); retrying for up to 120 s``) and
  once more when the database is back (``... reachable again after 3.4 s``).
  Past the window it raises ``DatabaseUnreachable``, a ``StoreError`` whose
  message is one line: which database (password masked), for how long, while
  doing what, why, what is kept and how to wait longer. Callers retry only
  what is safe to repeat (idempotent writes, reads).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from driftlab import settings
from driftlab.errors import DriftlabError

T = TypeVar("T")

DEFAULT_URL_ENV = settings.DB_URL.name
DEFAULT_LOCAL_DIR = ".driftlab"
JOURNAL_SCHEME = "journal://"

DB_RETRY_ENV = settings.DB_RETRY_S.name
DEFAULT_DB_RETRY_S = float(settings.DB_RETRY_S.default or 120)
FIRST_RETRY_DELAY_S = 0.25
MAX_RETRY_DELAY_S = 5.0

#: Connection pool per process: main thread + Optuna's heartbeat thread + slack.
POOL_SIZE = 2
POOL_MAX_OVERFLOW = 2
POOL_TIMEOUT_S = 30
POOL_RECYCLE_S = 1800
SQLITE_TIMEOUT_S = 60
#: libpq settings: give up a connect after 10 s, notice a dead peer within about a minute.
PG_CONNECT_ARGS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                   "keepalives_count": 3}

UNPARSEABLE = "<unparseable database URL>"
MASK = "***"


class StoreError(DriftlabError, RuntimeError):
    """A database (the results store's; past the retry window, the study's too) driftlab cannot use as it is."""

    exit_code = 2  # like bad input: the URL, the server or the tables need a person


class DatabaseUnreachable(StoreError):
    """A database (results or study) stayed unreachable for the whole retry window; the message is one line."""

    def __init__(self, message: str, *, reason: str = "", what: str = "", window: float = 0.0):  # defaults: pickling
        super().__init__(message)
        self.reason, self.what, self.window = reason, what, window


@dataclass(frozen=True)
class DatabaseRole:
    """What a database is for: its local default and how messages name it."""

    name: str
    #: How messages call it.
    noun: str
    #: The local default's file name under ``local_dir``, and the scheme that makes it a URL.
    local_file: str
    local_scheme: str
    #: What is kept when an outage outlasts the retry window, and how to go on.
    kept: str


RESULTS = DatabaseRole("results", "results database", "driftlab.sqlite", "sqlite:///",
                       "runs recorded so far are kept: run the same stage again to resume")
STUDY = DatabaseRole("study", "Optuna study database", "optuna-journal.log", JOURNAL_SCHEME,
                     "finished trials are kept: run the same stage again to resume")


# -- where -------------------------------------------------------------------------------------------------------
def local_dir(configured: str | os.PathLike = DEFAULT_LOCAL_DIR) -> Path:
    """The local defaults' folder; ``DRIFTLAB_HOME`` overrides the config (``driftlab run`` sets it)."""
    return Path(settings.HOME.raw() or configured).resolve()


def local_path(local_dir_: str | os.PathLike = DEFAULT_LOCAL_DIR, role: DatabaseRole = RESULTS) -> Path:
    """The file ``role`` uses without a database URL: ``<local_dir>/driftlab.sqlite`` or ``optuna-journal.log``."""
    return local_dir(local_dir_) / role.local_file


def database_url(url_env: str = DEFAULT_URL_ENV, local_dir_: str | os.PathLike = DEFAULT_LOCAL_DIR, *,
                 role: DatabaseRole = RESULTS) -> str:
    """The URL in the environment variable ``url_env`` (as written); else ``role``'s local default.

    The default's folder is created. For ``RESULTS`` it is ``sqlite:///<abs path>``; for ``STUDY``
    ``journal://<abs path>`` (the form ``tuning.commands.parse_storage`` reads).
    """
    url = os.environ.get(url_env, "").strip()
    if url:
        return url
    path = local_path(local_dir_, role)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"{role.local_scheme}{path}"


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg2 here (SQLAlchemy 2.1 would pick psycopg 3, not installed)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


# -- what may be shown -------------------------------------------------------------------------------------------
_SCHEME = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*://")
#: How SQLAlchemy reads the userinfo (``sqlalchemy.engine.url._parse_url``): the password runs to the first ``@``.
_SA_USERINFO = re.compile(r"^\s*[\w+]+://[^:/]*:([^@]*)@")
#: A libpq DSN: ``key=value`` pairs (values may be single-quoted, with backslash escapes).
_DSN = re.compile(r"^\s*[A-Za-z_]\w*\s*=")
_SECRET_KEY = r"[A-Za-z_]*(?:password|passwd|pwd)"
_DSN_SECRET = re.compile(rf"(?i)(?<![\w.])(?:{_SECRET_KEY})\s*=\s*('(?:\\.|[^'\\])*'?|[^\s']*)")
_QUERY_SECRET = re.compile(rf"(?i)[?&;]\s*(?:{_SECRET_KEY})\s*=([^&;#]*)")


def _secret_spans(url: str) -> list[tuple[int, int]]:
    """Where ``url`` (a URL or a libpq DSN) holds a password, as ``(start, end)`` spans, merged."""
    spans: list[tuple[int, int]] = []
    scheme = _SCHEME.match(url)
    if scheme:
        start = scheme.end()
        if url[start:start + 1] != "/":  # sqlite:////path has no authority, whatever its path holds
            # libpq stops the userinfo at the first "@", SQLAlchemy too; a malformed password may
            # hold an unencoded one: mask to the last "@" before the query (too much is safe).
            query = url.find("?", start)
            at = url.rfind("@", start, query if query >= 0 else len(url))
            colon = url.find(":", start, at) if at >= 0 else -1
            if colon >= 0:
                spans.append((colon + 1, at))
            sa_userinfo = _SA_USERINFO.match(url)  # what SQLAlchemy would send, "?" and "/" included
            if sa_userinfo:
                spans.append(sa_userinfo.span(1))
            if not spans:
                # No "@": "postgresql://user:secret/db" puts the password where the port goes.
                end = len(url)
                for stop in "/?#":
                    found = url.find(stop, start)
                    end = found if 0 <= found < end else end
                offset = start
                for host in url[start:end].split(","):
                    port = host.rfind(":")
                    if port >= 0 and not host.endswith("]") and not host[port + 1:].isdigit():
                        spans.append((offset + port + 1, offset + len(host)))
                    offset += len(host) + 1
        spans += [m.span(1) for m in _QUERY_SECRET.finditer(url)]
    elif _DSN.match(url):
        spans += [m.span(1) for m in _DSN_SECRET.finditer(url)]
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(s for s in spans if s[1] > s[0]):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _secrets(url: str) -> list[str]:
    """Every password ``url`` carries, as written and decoded, longest first."""
    found: set[str] = set()
    for lo, hi in _secret_spans(url):
        raw = url[lo:hi].strip()
        found |= {raw, raw.strip("'"), unquote(raw)}
    return sorted((s for s in found if s), key=len, reverse=True)


def mask_secrets(text: str, url: str) -> str:
    """``text`` (an error message, say) with every password ``url`` carries replaced by ``***``.

    A password shorter than 4 characters is replaced only where it stands alone, so that
    masking "pw" does not garble the words around it.
    """
    for secret in _secrets(url):
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
        else:
            text = re.sub(rf"(?<![\w]){re.escape(secret)}(?![\w])", MASK, text)
    return text


def safe_url(url: str) -> str:
    """The URL (or libpq DSN) as it may be shown to people: every password masked.

    ``user:pw@`` becomes ``user:***@``, ``?password=pw`` becomes ``?password=***`` and a DSN's
    ``password=pw`` becomes ``password=***``; a malformed URL is masked where libpq or SQLAlchemy
    could read a password. A string that is neither a URL nor a DSN is shown as
    ``<unparseable database URL>``.
    """
    url = str(url).strip()
    if not (_SCHEME.match(url) or _DSN.match(url)):
        return UNPARSEABLE
    masked, last = [], 0
    for lo, hi in _secret_spans(url):
        masked += [url[last:lo], MASK]
        last = hi
    return "".join(masked) + url[last:]


# -- engines -----------------------------------------------------------------------------------------------------
def engine_kwargs(url: str) -> dict[str, Any]:
    """``create_engine`` settings for ``url``; Optuna's ``RDBStorage(engine_kwargs=...)`` gets the same."""
    url = normalize_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
        return kwargs
    kwargs.update(pool_size=POOL_SIZE, max_overflow=POOL_MAX_OVERFLOW, pool_timeout=POOL_TIMEOUT_S,
                  pool_recycle=POOL_RECYCLE_S)
    if url.startswith("postgresql+psycopg2://"):
        kwargs["connect_args"] = dict(PG_CONNECT_ARGS)
    return kwargs


def make_engine(url: str, *, sqlite_wal: bool = True) -> Engine:
    """An engine for ``url`` (normalized) with ``engine_kwargs``.

    Args:
        url: Any SQLAlchemy URL; ``postgresql://`` means psycopg2.
        sqlite_wal: For an SQLite file: WAL journal (readers and one writer share the file), a
            60 s busy timeout, ``synchronous=NORMAL``. False for a file driftlab only reads
            (switching to WAL would change someone else's file).
    """
    url = normalize_url(url)
    engine = sa.create_engine(url, **engine_kwargs(url))
    if sqlite_wal and engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")  # SQLITE_TIMEOUT_S, in ms
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    return engine


# -- outages -----------------------------------------------------------------------------------------------------
_TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError)
_ALWAYS_TRANSIENT = (sa.exc.DisconnectionError, sa.exc.PendingRollbackError)
MAX_CHAIN = 8


def _from_sqlite(exc: sa.exc.DBAPIError) -> bool:
    return type(exc.orig).__module__.split(".")[0] in ("sqlite3", "_sqlite3", "pysqlite2")


def _next_in_chain(exc: BaseException) -> BaseException | None:
    """The exception ``exc`` was raised from (or while handling, unless ``from None`` hid it)."""
    if exc.__cause__ is not None:
        return exc.__cause__
    return None if exc.__suppress_context__ else exc.__context__


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a lost or refused connection, not a real error."""
    seen: BaseException | None = exc
    for _ in range(MAX_CHAIN):
        if seen is None:
            return False
        if isinstance(seen, sa.exc.DBAPIError):
            if seen.connection_invalidated:
                return True
            if isinstance(seen, _TRANSIENT) and not _from_sqlite(seen):
                return True
        elif isinstance(seen, _ALWAYS_TRANSIENT):
            return True
        elif type(seen).__module__.startswith("psycopg2") and type(seen).__name__ in (
                "OperationalError", "InterfaceError"):
            return True
        seen = _next_in_chain(seen)
    return False


def first_line(exc: BaseException | None, *, typed: bool = False) -> str:
    """The first line of the error ``exc`` comes from (its DBAPI error; the root of its ``from`` chain).

    ``typed`` prefixes the root's class name (``OperationalError: ...``).
    """
    if exc is None:
        return "unknown error"
    root = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    for _ in range(MAX_CHAIN):
        if root.__cause__ is None:
            break
        root = root.__cause__
    text = str(root).strip()
    line = text.splitlines()[0] if text else ""
    if typed:
        return f"{type(root).__name__}: {line}" if line else type(root).__name__
    return line or type(root).__name__


def retry_window() -> float:
    """Seconds to wait for an unreachable database: ``DRIFTLAB_DB_RETRY_S``, else 120."""
    raw = settings.DB_RETRY_S.raw()
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_DB_RETRY_S
    except ValueError:
        return DEFAULT_DB_RETRY_S


def retrying(attempt: Callable[[], T], what: str, *, url: str | None, role: DatabaseRole = RESULTS,
             reset: Callable[[], None] | None = None) -> T:
    """``attempt()``, retried with backoff while the database is unreachable (see the module docstring).

    Args:
        attempt: The database call; it must be safe to repeat (a read, an idempotent write).
        what: What it does, for the messages ("recording runs").
        url: The database, for the message past the window (password masked); None: not shown.
        role: Which database, for the messages (``RESULTS``, ``STUDY``).
        reset: Run before each retry (drops a session left in a failed transaction).

    Raises:
        DatabaseUnreachable: Still unreachable after ``retry_window()`` seconds; one line.
        Exception: What ``attempt`` raised, when it is not a lost connection.
    """
    window = retry_window()
    deadline = time.monotonic() + window
    delay, since = FIRST_RETRY_DELAY_S, None
    while True:
        try:
            result = attempt()
        except Exception as exc:
            if not is_transient(exc):
                raise
            reason = first_line(exc)
            if url:
                reason = mask_secrets(reason, url)
            if time.monotonic() >= deadline:
                where = f" {safe_url(url)}" if url else ""
                raise DatabaseUnreachable(
                    f"the {role.noun}{where} was unreachable for {window:.0f} s while {what} ({reason}); "
                    f"{role.kept} (wait longer with {DB_RETRY_ENV})",
                    reason=reason, what=what, window=window) from None
            if since is None:
                since = time.monotonic()
                print(f"[driftlab] {role.noun} unreachable while {what} ({reason}); "
                      f"retrying for up to {window:.0f} s", file=sys.stderr, flush=True)
            time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            if reset is not None:
                reset()
            delay = min(delay * 2, MAX_RETRY_DELAY_S)
            continue
        if since is not None:
            print(f"[driftlab] {role.noun} reachable again after {time.monotonic() - since:.1f} s",
                  file=sys.stderr, flush=True)
        return result
