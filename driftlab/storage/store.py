"""The results store: driftlab's own tables, beside Optuna's, in one database.

SQLite under the experiment's ``local_dir`` by default; PostgreSQL (or any
SQLAlchemy URL) when the environment variable named in ``storage.url_env``
(``DRIFTLAB_DB_URL``) is set. Tables are prefixed ``driftlab_`` so that they
never collide with Optuna's schema in the same database.

A run is stored under its key; storing a finished key again is a no-op, so
two stages, two workers or two pipeline runs can never record a run twice.
A failed attempt may be replaced by a later successful one.

An execution (one ``driftlab run``; a cluster run's exit record) records its
owner process and a sign of life (``last_seen``, refreshed by the owner's
heartbeat). ``start_execution`` first marks ``abandoned`` every ``running``
execution whose owner is gone (``storage.owner``: a dead process on this
machine, or silence longer than ``DRIFTLAB_EXECUTION_STALE_S``), keeping the
time of its last sign of life. Execution and report inserts carry a token, so a
retried insert never adds a second row.

A database that drops its connections or is unreachable for a while (a
restart, a failover, a network blip) is waited for: every call that reads or
writes (runs, experiments, executions, reports; opening the schema inside a
pipeline task) retries with backoff for ``DRIFTLAB_DB_RETRY_S`` seconds (120
by default) before giving up with a clear one-line ``StoreError``. Run writes
are idempotent, so a retried transaction never records a run twice.

The URL, its masking, the engine and the retry loop are ``storage.db``'s,
shared with Optuna's study storage; ``StoreError``, ``database_url``,
``local_dir``, ``safe_url`` and ``retry_window`` are importable from here too.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any, Callable, Iterable, Iterator, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from driftlab import settings
from driftlab.runs import codec
from driftlab.storage import arrays, owner
from driftlab.storage.db import (  # noqa: F401  (database_url, local_dir, retry_window: re-exported)
    RESULTS, StoreError, database_url, first_line, is_transient, local_dir, make_engine, mask_secrets,
    retry_window, retrying, safe_url)

SCHEMA_VERSION = 3  # 2: driftlab_runs.plan_hash; 3: executions' owner and sign of life, insert tokens
FINAL_STATUSES = ("ok", "diverged")
RUNNING, ABANDONED = "running", "abandoned"
SCHEMA_ATTEMPTS = 3
ARRAY_COLUMNS = ("predictions", "eval_labels", "weights")
RUN_PAGE = 2000  # runs fetched at once by iter_runs (no arrays: a few hundred bytes each)
ARRAY_CHUNK = 256  # runs per query of iter_arrays (their compressed arrays, ~40 KB each for 1,000 x 10)
FINGERPRINT_CACHE = 1024  # distinct fingerprints decoded once per iter_runs

T = TypeVar("T")

metadata = sa.MetaData()

meta_table = sa.Table(
    "driftlab_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)

experiments = sa.Table(
    "driftlab_experiments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

executions = sa.Table(
    "driftlab_executions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("driftlab_experiments.id"), nullable=False),
    sa.Column("campaign", sa.String(128), nullable=False),
    sa.Column("config_hash", sa.String(32), nullable=False),
    sa.Column("config_json", sa.Text, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("where", sa.String(16), nullable=False),
    # Version 3: the owner process (driftlab.storage.owner) and its last sign of life; an abandoned
    # execution keeps it (finished_at is set to it). request_id makes a retried insert a no-op.
    sa.Column("last_seen", sa.DateTime(timezone=True)),
    sa.Column("owner_host", sa.String(255)),
    sa.Column("owner_pid", sa.Integer),
    sa.Column("owner_start", sa.String(128)),
    sa.Column("request_id", sa.String(32)),
    sa.Index("ux_driftlab_executions_request", "request_id", unique=True),
)

runs = sa.Table(
    "driftlab_runs", metadata,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("driftlab_experiments.id"), nullable=False),
    sa.Column("campaign", sa.String(128), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("profile", sa.String(63), nullable=False),
    sa.Column("init_seed", sa.BigInteger, nullable=False),
    sa.Column("shuffle_seed", sa.BigInteger, nullable=False),
    sa.Column("split_seed", sa.BigInteger, nullable=False),
    sa.Column("repeat", sa.Integer, nullable=False),
    sa.Column("deterministic", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("task", sa.String(16)),
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("metrics_json", sa.Text),
    sa.Column("history_json", sa.Text),
    sa.Column("fingerprint_json", sa.Text),
    sa.Column("timings_json", sa.Text),
    sa.Column("init_digest", sa.String(64)),
    sa.Column("weights_digest", sa.String(64)),
    sa.Column("predictions", sa.LargeBinary),
    sa.Column("eval_labels", sa.LargeBinary),
    sa.Column("weights", sa.LargeBinary),
    sa.Column("weights_kind", sa.String(16)),
    sa.Column("n_params", sa.BigInteger),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # driftlab.config.plan_hash of the experiment that planned the run (NULL: recorded before version 2).
    sa.Column("plan_hash", sa.String(32)),
    sa.Index("ix_driftlab_runs_exp_campaign", "experiment_id", "campaign"),
    # A campaign's runs in key order (iter_runs) without a sort, and the columns stored after the arrays read
    # from the index: SQLite would otherwise walk every run's array pages to reach them (0.4 s at 50,000 runs).
    sa.Index("ix_driftlab_runs_scan", "experiment_id", "campaign", "plan_hash", "key", "weights_kind", "n_params",
             "created_at"),
)

reports = sa.Table(
    "driftlab_reports", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("driftlab_experiments.id"), nullable=False),
    sa.Column("campaign", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("gate", sa.String(8), nullable=False),
    sa.Column("report_json", sa.Text, nullable=False),
    sa.Column("request_id", sa.String(32)),  # version 3: a retried insert is a no-op
    sa.Index("ux_driftlab_reports_request", "request_id", unique=True),
)

#: Nullable columns added since version 1, by table: an older driftlab table gains them in place.
ADDED_COLUMNS = {
    "driftlab_runs": ("plan_hash",),
    "driftlab_executions": ("last_seen", "owner_host", "owner_pid", "owner_start", "request_id"),
    "driftlab_reports": ("request_id",),
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """A stored time as UTC (SQLite keeps no zone; the store writes UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.timezone.utc)


def _with_utc(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _utc(v) if isinstance(v, dt.datetime) else v for k, v in row.items()}


class Store:
    """Experiments, runs and reports in one database."""

    def __init__(self, url: str):
        self.url = url
        try:
            self.engine = make_engine(url)
        except (sa.exc.ArgumentError, ValueError, ImportError) as exc:  # a malformed URL, an unknown driver
            reason = mask_secrets(first_line(exc), url)
            raise StoreError(f"the results database URL {safe_url(url)} cannot be used ({reason}); set it like "
                             "postgresql+psycopg2://USER:PASSWORD@HOST:5432/DATABASE, or unset it for the "
                             "local SQLite default") from None
        self._open_schema()

    @classmethod
    def from_config(cls, config) -> "Store":
        return cls(database_url(config.storage.url_env, config.storage.local_dir))

    def __repr__(self) -> str:
        return f"Store({safe_url(self.url)})"

    # -- schema ---------------------------------------------------------------
    _waiting_at_open = False

    def _open_schema(self) -> None:
        """Check and create the schema; inside a pipeline task, wait out an outage like every other call.

        A task of ``driftlab run`` (``DRIFTLAB_DB_WAIT_AT_OPEN=1``, set by ``local_run``) or of a cluster
        run (``DRIFTLAB_WHERE=cluster``) opens a database that was reachable when the run started, so a
        refused connection is an outage. Anywhere else (``driftlab run`` itself, ``report history``) it is
        most likely a wrong URL: refused at once.
        """
        if not (settings.DB_WAIT_AT_OPEN.raw() == "1" or settings.WHERE.get() == "cluster"):
            self._ensure_schema()
            return
        self._waiting_at_open = True
        try:
            self._retrying("opening the results database", self._ensure_schema)
        finally:
            self._waiting_at_open = False

    def _ensure_schema(self) -> None:
        for attempt in range(SCHEMA_ATTEMPTS + 2):
            try:
                self._ensure_schema_once()
                return
            except sa.exc.OperationalError as exc:
                # SQLite answers "database is locked" at once, without waiting, when a reader must become a
                # writer while another process writes (its deadlock avoidance): several stages opening a
                # fresh file together. The other's schema is there a moment later: look again.
                locked = self.engine.dialect.name == "sqlite" and "locked" in str(exc.orig)
                if not locked or attempt == SCHEMA_ATTEMPTS + 1:
                    raise self._schema_error(exc) from None
                time.sleep(0.25 * (attempt + 1))
            except sa.exc.DatabaseError as exc:
                raise self._schema_error(exc) from None

    def _ensure_schema_once(self) -> None:
        version = None
        with self.engine.begin() as conn:
            inspector = sa.inspect(conn)
            if inspector.has_table("driftlab_meta"):
                row = conn.execute(sa.select(meta_table.c.value).where(
                    meta_table.c.key == "schema_version")).first()
                version = _schema_version(row[0] if row else "0", self.url)
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"the results database {safe_url(self.url)} has driftlab schema version {version}, "
                        f"newer than this driftlab ({SCHEMA_VERSION}); upgrade driftlab")
        # Creates what is missing (a fresh database, or tables someone dropped); keeps what is there.
        self._create_missing_tables()
        self._migrate()
        with self.engine.begin() as conn:
            self._check_columns(sa.inspect(conn))
            if version != SCHEMA_VERSION:  # written once, not by every process that opens the database
                self._upsert_meta(conn, "schema_version", str(SCHEMA_VERSION))

    def _schema_error(self, exc: sa.exc.DBAPIError) -> BaseException:
        """The error to raise for a failed schema check (the driver's own, while ``_open_schema`` waits)."""
        if isinstance(exc, sa.exc.OperationalError):
            if self._waiting_at_open and is_transient(exc):
                return exc  # _open_schema waits for the database
            return StoreError(f"cannot open the results database {safe_url(self.url)}: {first_line(exc)}")
        return StoreError(f"{safe_url(self.url)} is not a usable results database: {first_line(exc)}")

    def _create_missing_tables(self) -> None:
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                metadata.create_all(self.engine, checkfirst=True)
                return
            except sa.exc.DatabaseError:
                # Two stages starting on a fresh database race to create the same tables
                # (PostgreSQL: duplicate key in pg_type; SQLite: table already exists). The
                # winner's tables are there now: check again.
                if attempt == SCHEMA_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _migrate(self) -> None:
        """Bring older driftlab tables to this schema: add the nullable columns and the indexes added since.

        A table counts as driftlab's when it has every column it had in version 1; anything else is
        left for ``_check_columns`` to refuse. Rows are never touched.
        """
        for table in metadata.sorted_tables:
            added = ADDED_COLUMNS.get(table.name, ())
            with self.engine.connect() as conn:
                inspector = sa.inspect(conn)
                present = {c["name"] for c in inspector.get_columns(table.name)}
                indexes = {ix["name"] for ix in inspector.get_indexes(table.name)}
            if not added or any(c.name not in present for c in table.columns if c.name not in added):
                continue
            for name in added:
                if name not in present:
                    self._add_column(table.c[name])
            for index in table.indexes:
                if index.name not in indexes:
                    self._add_index(index)

    def _add_index(self, index: sa.Index) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
        except sa.exc.DatabaseError:
            with self.engine.connect() as conn:  # another process opening the database made it first
                if index.name not in {ix["name"] for ix in sa.inspect(conn).get_indexes(index.table.name)}:
                    raise

    def _add_column(self, column: sa.Column) -> None:
        quote = self.engine.dialect.identifier_preparer.quote
        ddl = (f"ALTER TABLE {quote(column.table.name)} ADD COLUMN {quote(column.name)} "
               f"{column.type.compile(dialect=self.engine.dialect)}")
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.text(ddl))
        except sa.exc.DatabaseError:
            with self.engine.connect() as conn:  # another process opening the database added it first
                if column.name not in {c["name"] for c in sa.inspect(conn).get_columns(column.table.name)}:
                    raise

    def _check_columns(self, inspector) -> None:
        """Refuse tables named like driftlab's that another program (or version) made with other columns."""
        for table in metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            missing = [c.name for c in table.columns if c.name not in present]
            if missing:
                raise StoreError(
                    f"the results database {safe_url(self.url)} has a table {table.name} without the columns "
                    f"{', '.join(missing)}: it was not made by this driftlab (schema {SCHEMA_VERSION}); "
                    "use another database, or drop the driftlab_* tables if they hold nothing you need")

    def _upsert_meta(self, conn, key: str, value: str) -> None:
        stmt = self._insert(meta_table).values(key=key, value=value)
        conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value}))

    def _insert(self, table: sa.Table):
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        if self.engine.dialect.name == "sqlite":
            return sqlite.insert(table)
        raise StoreError(f"unsupported database dialect '{self.engine.dialect.name}'; use PostgreSQL or SQLite")

    # -- outages ------------------------------------------------------------------
    def _retrying(self, what: str, attempt: Callable[[], T]) -> T:
        """``attempt()``, retried while the database is unreachable (``db.retrying``; see the module docstring)."""
        return retrying(attempt, what, url=self.url, role=RESULTS)

    # -- experiments and executions ------------------------------------------
    def experiment_id(self, name: str) -> int:
        def attempt() -> int:
            with self.engine.begin() as conn:
                conn.execute(self._insert(experiments).values(name=name, created_at=_now())
                             .on_conflict_do_nothing(index_elements=["name"]))
                return int(conn.execute(sa.select(experiments.c.id).where(experiments.c.name == name)).scalar_one())

        return self._retrying("recording the experiment", attempt)

    def start_execution(self, name: str, campaign: str, config_hash: str, config_json: str,
                        where: str = "local") -> int:
        """Record a ``running`` execution owned by this process; returns its id.

        Executions whose owner is gone are marked ``abandoned`` first (``mark_abandoned``). The
        insert carries a fresh token, so a retry after a lost reply finds its row instead of adding
        one. The experiment's row is locked first: one experiment's executions get their ids in
        commit order, which ``executions_ahead`` relies on.
        """
        exp = self.experiment_id(name)
        me, stale_s, token = owner.this_process(), owner.stale_after(), uuid.uuid4().hex

        def attempt() -> int:
            with self.engine.begin() as conn:
                conn.execute(experiments.update().where(experiments.c.id == exp).values(name=experiments.c.name))
                self._abandon(conn, stale_s)
                now = _now()
                conn.execute(self._insert(executions).values(
                    experiment_id=exp, campaign=campaign, config_hash=config_hash, config_json=config_json,
                    started_at=now, status=RUNNING, where=where, last_seen=now, owner_host=me.host,
                    owner_pid=me.pid, owner_start=me.start, request_id=token)
                    .on_conflict_do_nothing(index_elements=["request_id"]))
                return int(conn.execute(sa.select(executions.c.id).where(executions.c.request_id == token)).scalar_one())

        return self._retrying("recording the execution", attempt)

    def finish_execution(self, execution_id: int, status: str) -> None:
        def attempt() -> None:
            with self.engine.begin() as conn:
                now = _now()
                conn.execute(executions.update().where(executions.c.id == execution_id)
                             .values(status=status, finished_at=now, last_seen=now))

        self._retrying("recording the execution's outcome", attempt)

    def touch_execution(self, execution_id: int) -> None:
        """Refresh the execution's sign of life (one attempt: a missed beat is harmless).

        An execution a sweep took for abandoned while its owner was silent is ``running`` again.
        """
        with self.engine.begin() as conn:
            conn.execute(executions.update().where(executions.c.id == execution_id,
                                                   executions.c.status.in_((RUNNING, ABANDONED)))
                         .values(last_seen=_now(), status=RUNNING, finished_at=None))

    def mark_abandoned(self) -> list[dict[str, Any]]:
        """Mark ``abandoned`` every running execution whose owner is gone; returns those marked.

        Gone: ``owner.state`` proves the process dead, or cannot judge it (another machine) and its last
        sign of life is older than ``DRIFTLAB_EXECUTION_STALE_S``. The row keeps that time in
        ``last_seen`` and ``finished_at``.
        """
        stale_s = owner.stale_after()

        def attempt() -> list[dict[str, Any]]:
            with self.engine.begin() as conn:
                return self._abandon(conn, stale_s)

        return self._retrying("checking for abandoned executions", attempt)

    def _abandon(self, conn, stale_s: float) -> list[dict[str, Any]]:
        query = (sa.select(executions.c.id, experiments.c.name.label("experiment"), executions.c.campaign,
                           executions.c.started_at, executions.c.last_seen, executions.c.owner_host,
                           executions.c.owner_pid, executions.c.owner_start)
                 .join(experiments, experiments.c.id == executions.c.experiment_id)
                 .where(executions.c.status == RUNNING))
        now, marked = _now(), []
        for row in conn.execute(query).all():
            seen = _utc(row.last_seen or row.started_at)
            judged = owner.state(row.owner_host, row.owner_pid, row.owner_start)
            silent = (now - seen).total_seconds()
            if judged == owner.DEAD:
                reason = f"its process {row.owner_pid} on {row.owner_host} is gone"
            elif judged == owner.UNKNOWN and silent > stale_s:
                reason = f"no sign of life for {silent:.0f} s (more than {stale_s:.0f} s)"
            else:
                continue
            changed = conn.execute(executions.update().where(executions.c.id == row.id, executions.c.status == RUNNING)
                                   .values(status=ABANDONED, last_seen=seen, finished_at=seen)).rowcount
            if changed:
                marked.append({"id": row.id, "experiment": row.experiment, "campaign": row.campaign,
                               "last_seen": seen, "reason": reason})
        return marked

    def executions_ahead(self, execution_id: int) -> list[dict[str, Any]]:
        """Running executions of the same experiment and campaign recorded before this one, oldest first.

        Dead ones are marked abandoned first, so what is left is alive (or not yet silent long enough).
        """
        self.mark_abandoned()
        mine = executions.alias("mine")
        query = (sa.select(executions.c.id, executions.c.started_at, executions.c.last_seen,
                           executions.c.owner_host, executions.c.owner_pid)
                 .join(mine, sa.and_(mine.c.id == execution_id, mine.c.experiment_id == executions.c.experiment_id,
                                     mine.c.campaign == executions.c.campaign))
                 .where(executions.c.id < execution_id, executions.c.status == RUNNING).order_by(executions.c.id))

        def attempt() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                return [_with_utc(dict(r._mapping)) for r in conn.execute(query)]

        return self._retrying("checking the campaign's other executions", attempt)

    def list_executions(self, experiment: str | None = None, *, limit: int = 20) -> list[dict[str, Any]]:
        """The newest ``limit`` executions (of one experiment), oldest first; times in UTC."""
        query = (sa.select(executions.c.id, experiments.c.name.label("experiment"), executions.c.campaign,
                           executions.c.where, executions.c.status, executions.c.started_at,
                           executions.c.finished_at, executions.c.last_seen, executions.c.owner_host,
                           executions.c.owner_pid)
                 .join(experiments, experiments.c.id == executions.c.experiment_id)
                 .order_by(executions.c.id.desc()).limit(limit))
        if experiment is not None:
            query = query.where(experiments.c.name == experiment)

        def attempt() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                return [_with_utc(dict(r._mapping)) for r in conn.execute(query)][::-1]

        return self._retrying("reading executions", attempt)

    # -- runs -----------------------------------------------------------------
    def done_keys(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)

        def attempt() -> set[str]:
            found: set[str] = set()
            with self.engine.connect() as conn:
                for start in range(0, len(keys), 500):
                    chunk = keys[start:start + 500]
                    found.update(conn.execute(sa.select(runs.c.key).where(
                        runs.c.key.in_(chunk), runs.c.status.in_(FINAL_STATUSES))).scalars())
            return found

        return self._retrying("checking which runs are recorded", attempt)

    def save_runs(self, experiment_id: int, spec_records: list[tuple[Any, dict[str, Any]]]) -> int:
        """Store (spec, record) pairs in one transaction; returns how many were new."""
        rows = [self._row(experiment_id, spec, record) for spec, record in spec_records]
        if not rows:
            return 0
        return self._retrying("recording runs", lambda: self._insert_runs(rows))

    def _insert_runs(self, rows: list[dict[str, Any]]) -> int:
        new = 0
        with self.engine.begin() as conn:
            for row in rows:
                stmt = self._insert(runs).values(**row)
                if row["status"] in FINAL_STATUSES:
                    # Replace only a failed attempt; a finished run is never overwritten.
                    stmt = stmt.on_conflict_do_update(
                        index_elements=["key"], set_={k: stmt.excluded[k] for k in row if k != "key"},
                        where=runs.c.status.notin_(FINAL_STATUSES))
                else:
                    stmt = stmt.on_conflict_do_update(
                        index_elements=["key"], set_={"error": stmt.excluded.error, "created_at": _now()},
                        where=runs.c.status.notin_(FINAL_STATUSES))
                new += conn.execute(stmt).rowcount or 0
        return new

    @staticmethod
    def _row(experiment_id: int, spec, record: dict[str, Any]) -> dict[str, Any]:
        def js(name: str) -> str | None:
            value = record.get(name)
            return None if value is None else json.dumps(value, default=float)

        return {
            "key": spec.key, "experiment_id": experiment_id, "campaign": spec.campaign,
            "stage": spec.stage, "profile": spec.profile_name, "init_seed": spec.init_seed,
            "shuffle_seed": spec.shuffle_seed, "split_seed": spec.split_seed, "repeat": spec.repeat,
            "deterministic": spec.deterministic, "status": record.get("status", "failed"),
            "error": record.get("error"), "task": record.get("task"),
            "spec_json": json.dumps(spec.to_json(), sort_keys=True),
            "metrics_json": js("metrics"), "history_json": js("history"),
            "fingerprint_json": js("fingerprint"), "timings_json": js("timings"),
            "init_digest": record.get("init_digest"), "weights_digest": record.get("weights_digest"),
            # predictions plain: aggregation reads every run's predictions once or twice, and inflating them cost
            # more than the ~10% of bytes zlib saves on model outputs (BENCHMARKS.md §5)
            "predictions": codec.pack(record.get("predictions"), compress=False),
            "eval_labels": codec.pack(record.get("eval_labels")),
            "weights": codec.pack(record.get("weights")), "weights_kind": record.get("weights_kind"),
            "n_params": record.get("n_params"), "created_at": _now(),
            "plan_hash": getattr(spec, "plan", "") or None,
        }

    def load_runs(self, experiment: str, campaign: str | None = None, *,
                  with_arrays: bool = True, plan: str | None = None) -> list[dict[str, Any]]:
        """The runs of an experiment (one campaign; one plan's runs only, given ``plan``)."""
        cols = [c for c in runs.c if with_arrays or c.name not in ARRAY_COLUMNS]
        query = (sa.select(*cols).join(experiments, experiments.c.id == runs.c.experiment_id)
                 .where(experiments.c.name == experiment).order_by(runs.c.key))
        if campaign is not None:
            query = query.where(runs.c.campaign == campaign)
        if plan is not None:
            query = query.where(runs.c.plan_hash == plan)

        def attempt() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                return [self._decode(dict(r._mapping)) for r in conn.execute(query)]

        return self._retrying("loading runs", attempt)

    def iter_runs(self, experiment: str, campaign: str | None = None, *, plan: str | None = None,
                  with_spec: bool = True, page: int = RUN_PAGE) -> Iterator[dict[str, Any]]:
        """The runs ``load_runs(..., with_arrays=False)`` gives, in the same order, streamed ``page`` rows at a time.

        One query (a connection lost midway resumes after the last key read). Each record says
        whether it has predictions (``predictions_stored``); ``iter_arrays`` reads the arrays of the
        runs that need them. ``with_spec=False`` leaves out the run specs (``spec`` is None).
        Equal fingerprints are one shared dict: treat the records as read-only.
        """
        cols = [c for c in runs.c if c.name not in ARRAY_COLUMNS and (with_spec or c.name != "spec_json")]
        stored = sa.func.length(runs.c.predictions).is_not(None).label("predictions_stored")  # reads no blob
        query = (sa.select(*cols, stored).join(experiments, experiments.c.id == runs.c.experiment_id)
                 .where(experiments.c.name == experiment).order_by(runs.c.key))
        if campaign is not None:
            query = query.where(runs.c.campaign == campaign)
        if plan is not None:
            query = query.where(runs.c.plan_hash == plan)
        fingerprints: dict[str, Any] = {}
        last = None
        while True:
            start = query if last is None else query.where(runs.c.key > last)
            conn, result, rows = self._retrying("loading runs", lambda: self._open_stream(start, page))
            try:
                while rows:
                    for row in rows:
                        last = row["key"]
                        yield self._decode_scalars(row, fingerprints)
                    rows = self._next_rows(result, page)
            finally:
                conn.close()
            if rows is not None:  # read to the end (None: the connection was lost; go on after ``last``)
                return

    def _open_stream(self, query, page: int):
        conn = self.engine.connect()
        try:
            result = conn.execution_options(stream_results=True, yield_per=page).execute(query)
            return conn, result, [dict(r._mapping) for r in result.fetchmany(page)]
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _next_rows(result, page: int) -> list[dict[str, Any]] | None:
        try:
            return [dict(r._mapping) for r in result.fetchmany(page)]
        except sa.exc.DBAPIError as exc:
            if is_transient(exc):
                return None
            raise

    def _decode_scalars(self, row: dict[str, Any], fingerprints: dict[str, Any]) -> dict[str, Any]:
        text = row.pop("fingerprint_json", None)
        if text and text not in fingerprints and len(fingerprints) < FINGERPRINT_CACHE:
            fingerprints[text] = json.loads(text)
        row = self._decode(row)
        row["fingerprint"] = fingerprints.get(text) or (json.loads(text) if text else None)
        row["predictions_stored"] = bool(row["predictions_stored"])
        return row

    def iter_arrays(self, keys: Iterable[str], *, chunk: int = ARRAY_CHUNK,
                    names: tuple[str, ...] = ARRAY_COLUMNS) -> Iterator[tuple[str, arrays.LazyArrays]]:
        """``(key, arrays)`` of the runs ``keys`` (any order), ``chunk`` runs per query; ``arrays.get(name)``
        decodes one of ``names`` (``predictions``, ``eval_labels``, ``weights``) when first asked for."""
        keys = list(keys)
        for start in range(0, len(keys), chunk):
            query = sa.select(runs.c.key, *[runs.c[n] for n in names]).where(
                runs.c.key.in_(keys[start:start + chunk]))

            def attempt(query=query) -> list[tuple[str, arrays.LazyArrays]]:
                with self.engine.connect() as conn:
                    return [(row[0], arrays.LazyArrays(dict(zip(names, row[1:])))) for row in conn.execute(query)]

            yield from self._retrying("loading run arrays", attempt)

    @staticmethod
    def _decode(row: dict[str, Any]) -> dict[str, Any]:
        for name in ("spec", "metrics", "history", "fingerprint", "timings"):
            text = row.pop(f"{name}_json", None)
            row[name] = json.loads(text) if text else None
        for name in ("predictions", "eval_labels", "weights"):
            if name in row:
                row[name] = codec.unpack(row[name])
        return row

    # -- campaigns ------------------------------------------------------------
    def campaign_plans(self, experiment: str, campaign: str) -> dict[str | None, int]:
        """How many runs each plan hash has under a campaign (None: runs recorded before plans)."""
        query = (sa.select(runs.c.plan_hash, sa.func.count()).join(experiments, experiments.c.id == runs.c.experiment_id)
                 .where(experiments.c.name == experiment, runs.c.campaign == campaign).group_by(runs.c.plan_hash))

        def attempt() -> dict[str | None, int]:
            with self.engine.connect() as conn:
                return {h: int(n) for h, n in conn.execute(query)}

        return self._retrying("reading the campaign's plans", attempt)

    def campaign_configs(self, experiment: str, campaign: str) -> list[dict[str, Any]]:
        """The canonical configs that executions of a campaign ran with, newest first."""
        query = (sa.select(executions.c.config_json).join(experiments, experiments.c.id == executions.c.experiment_id)
                 .where(experiments.c.name == experiment, executions.c.campaign == campaign)
                 .order_by(executions.c.id.desc()))

        def attempt() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                return [json.loads(text) for text in conn.execute(query).scalars()]

        return self._retrying("reading the campaign's executions", attempt)

    def delete_campaign(self, experiment: str, campaign: str) -> int:
        """Remove a campaign's runs and reports (executions stay, as the audit trail); returns runs removed."""
        exp = sa.select(experiments.c.id).where(experiments.c.name == experiment).scalar_subquery()

        def attempt() -> int:
            with self.engine.begin() as conn:
                removed = conn.execute(runs.delete().where(runs.c.experiment_id == exp, runs.c.campaign == campaign))
                conn.execute(reports.delete().where(reports.c.experiment_id == exp, reports.c.campaign == campaign))
                return int(removed.rowcount or 0)

        return self._retrying("removing the campaign", attempt)

    def count_runs(self, experiment: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(runs)
        if experiment is not None:
            query = query.join(experiments, experiments.c.id == runs.c.experiment_id).where(
                experiments.c.name == experiment)

        def attempt() -> int:
            with self.engine.connect() as conn:
                return int(conn.execute(query).scalar_one())

        return self._retrying("counting runs", attempt)

    # -- reports --------------------------------------------------------------
    def save_report(self, experiment: str, campaign: str, gate: str, report: dict[str, Any]) -> int:
        """Store a report; returns its id. A retry after a lost reply finds the row instead of adding one."""
        exp = self.experiment_id(experiment)
        report_json = json.dumps(report, default=float)
        token = uuid.uuid4().hex

        def attempt() -> int:
            with self.engine.begin() as conn:
                conn.execute(self._insert(reports).values(
                    experiment_id=exp, campaign=campaign, created_at=_now(), gate=gate, report_json=report_json,
                    request_id=token).on_conflict_do_nothing(index_elements=["request_id"]))
                return int(conn.execute(sa.select(reports.c.id).where(reports.c.request_id == token)).scalar_one())

        return self._retrying("saving the report", attempt)

    def iter_reports(self, experiment: str | None = None) -> Iterator[dict[str, Any]]:
        query = (sa.select(reports, experiments.c.name.label("experiment"))
                 .join(experiments, experiments.c.id == reports.c.experiment_id).order_by(reports.c.created_at))
        if experiment is not None:
            query = query.where(experiments.c.name == experiment)

        def attempt() -> list[dict[str, Any]]:  # read whole inside the retry: an outage never cuts it halfway
            with self.engine.connect() as conn:
                rows = [dict(r._mapping) for r in conn.execute(query)]
            for row in rows:
                row["report"] = json.loads(row.pop("report_json"))
            return rows

        return iter(self._retrying("reading reports", attempt))


def _schema_version(value: str, url: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise StoreError(f"the results database {safe_url(url)} has a driftlab_meta schema_version "
                         f"{value!r} that is not a number; it was not made by driftlab") from None

