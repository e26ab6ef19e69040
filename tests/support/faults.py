"""Fault injection for the reliability tests: a TCP proxy to cut the database, scratch roles, figures.

Nothing here fakes driftlab: the proxy forwards real PostgreSQL traffic and,
when stopped, refuses connections and cuts the open ones, which is what a
client sees when the server restarts or the network drops. The shared
PostgreSQL server itself is never stopped (other tests use it).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
from support.storages import PG_URL  # noqa: E402  (one definition)
FIGURE = "reliability"  # the user_properties name scripts/fault_harness.py collects


class TcpProxy:
    """Forward 127.0.0.1:<port> to a server; ``stop`` refuses and cuts connections, ``start`` resumes.

    The port stays the same across stop/start, so a database URL pointing at
    the proxy sees exactly what it would see when its server goes away and
    comes back.
    """

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.connections_cut = 0

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:  # the old listener's accept() is still unwinding
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept(); close() alone does not
            except OSError:
                pass
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            self.connections_cut += 1
            _close(conn)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:
                    _close(client), _close(server)
                    continue
                self._conns.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src), _close(dst)
            with self._lock:
                self._conns.discard(src), self._conns.discard(dst)

    def url_for(self, url: str) -> str:
        """``url`` with host and port replaced by the proxy's."""
        return sa.engine.make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def admin_connection():
    import psycopg2

    conn = psycopg2.connect(PG_URL, connect_timeout=5)
    conn.autocommit = True
    return conn


@contextmanager
def scratch_database(*, password: str | None = None) -> Iterator[str]:
    """A fresh database (owned by a fresh LOGIN role with ``password`` when given); dropped afterwards.

    Yields its SQLAlchemy URL, password included: the caller decides where it may go.
    """
    from psycopg2 import sql

    tag = uuid.uuid4().hex[:10]
    name, role = f"driftlab_rel_{tag}", f"driftlab_rel_{tag}"
    admin = admin_connection()
    base = sa.engine.make_url(PG_URL).set(drivername="postgresql+psycopg2", database=name)
    with admin.cursor() as cur:
        if password is not None:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)), (password,))
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role)))
            base = base.set(username=role, password=password)
        else:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield base.render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            if password is not None:
                cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()


def terminate_backends(database: str) -> int:
    """``pg_terminate_backend`` every connection to ``database`` (but this one); returns how many."""
    admin = admin_connection()
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()", (database,))
            return int(cur.fetchone()[0])
    finally:
        admin.close()


def test_password() -> str:
    """A password no other string in the repository or the logs can contain by chance."""
    return f"Leak-Canary-{secrets.token_hex(8)}"


test_password.__test__ = False  # a helper, not a pytest test


def run_counts(url: str, experiment: str) -> dict[str, int]:
    """Rows, distinct keys and rows per status of one experiment, read with plain SQL (bound parameters)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT r.key, r.status FROM driftlab_runs r JOIN driftlab_experiments e "
                "ON e.id = r.experiment_id WHERE e.name = :name"), {"name": experiment}).all()
            experiments = conn.execute(sa.text("SELECT count(*) FROM driftlab_experiments WHERE name = :name"),
                                       {"name": experiment}).scalar_one()
    finally:
        engine.dispose()
    counts = {"rows": len(rows), "keys": len({r.key for r in rows}), "experiment_rows": int(experiments)}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


STAGE_SCRIPT = """
import json, sys
from driftlab import stages
summary = stages.retrain_seeds(open(sys.argv[1]).read(), sys.argv[2], json.loads(sys.argv[3]), jobs=1, quiet=True)
print("SUMMARY " + json.dumps(summary), flush=True)
"""


def start_stage(config_path: Path, campaign: str, env: dict[str, str], best_params: str = "{}",
                log: Path | None = None) -> subprocess.Popen:
    """``stages.retrain_seeds`` in a process of its own, as a KFP task runs it (URL by environment only)."""
    full = {**os.environ, **env}
    full.pop("DRIFTLAB_WHERE", None)
    stderr = open(log, "w") if log else subprocess.PIPE
    return subprocess.Popen([sys.executable, "-c", STAGE_SCRIPT, str(config_path), campaign, best_params],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=full, text=True,
                            start_new_session=True)


def summary_of(stdout: str) -> dict[str, Any]:
    import json

    assert "SUMMARY " in stdout, f"the stage printed no summary: {stdout[-2000:]}"
    return json.loads(stdout.split("SUMMARY ", 1)[1].splitlines()[0])


def wait_for(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> float:
    """Poll until ``condition()``; returns the seconds waited. Fails with ``what`` on timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if condition():
            return time.monotonic() - t0
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def kill_group(proc: subprocess.Popen) -> None:
    """End a stage this test started (its own process group) if it is still running."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def figure(request, fault: str, *, cases: int, note: str = "") -> dict[str, Any]:
    """One row of RELIABILITY.md's table, attached to this test (collected by scripts/fault_harness.py).

    Returns the row: the test fills in ``lost`` (finished runs that went
    missing), ``duplicates`` (keys recorded more than once), ``wasted`` (runs
    trained but not needed) and ``recover_s`` as it measures them. Whether the
    cases passed comes from pytest's own outcome, never from the test itself.
    """
    row = {"fault": fault, "cases": cases, "lost": None, "duplicates": None, "wasted": None,
           "recover_s": None, "note": note}
    request.node.user_properties.append((FIGURE, row))
    return row


@contextmanager
def small_filesystem(path: Path, *, size: str = "256k", read_only: bool = False) -> Iterator[Path]:
    """A real tmpfs of ``size`` at ``path`` (``read_only``: mounted ro), unmounted afterwards.

    Needs CAP_SYS_ADMIN (root in this environment). Without it a read-only
    folder falls back to mode 0555 (enough for a non-root user); a full disk
    cannot be faked, so the caller is skipped with the reason.
    """
    import pytest

    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if read_only and os.geteuid() != 0:
            path.chmod(0o555)
            try:
                yield path
            finally:
                path.chmod(0o755)
            return
        pytest.skip(f"cannot mount a tmpfs at {path} ({mounted.stderr.strip()}); needs CAP_SYS_ADMIN")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path, leave_bytes: int) -> Path:
    """Fill the filesystem holding ``path`` until about ``leave_bytes`` are free; returns the filler file."""
    filler = path / "filler.bin"
    free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_bytes))
    return filler
