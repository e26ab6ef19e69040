"""Warm training workers lent to the tasks of one local ``driftlab run``.

Locally every training task (tune, retrain across seeds, each node profile, the
runner-ups) is its own kfp.local process, and each used to start its own workers:
one TensorFlow import (about 5 s of one core) per worker per task. ``driftlab run``
now keeps a depot: a Unix socket in the run's private temporary folder
(``DRIFTLAB_WORKER_DEPOT``) and a pool of idle workers keyed by the profile's knobs.
A task's ``executor.Worker`` asks the depot for a worker of its profile and gets the
two ends of the worker's pipes (``SCM_RIGHTS``), so the protocol is the same as with
a worker it started itself; when the task is done with it, the worker goes back to
the pool and the next task of the same profile trains on it at once.

Rules that keep a lent worker equivalent to a fresh one:

- a worker is only ever lent between runs (a released worker has answered every
  spec it was sent) and only to a task of the same profile knobs (the ISA cap,
  oneDNN, threads, TF32, the profile's name and kind), so it computes what a fresh
  worker would (``training.train`` reseeds and clears the session per run);
- a task that ends without releasing (killed, crashed, timed out) takes its worker
  with it: the depot kills it, and a later task gets a fresh one;
- the depot spawns workers from one long-lived thread: forked by a fork server that
  thread started (``forkserver``: one TensorFlow import per run), or with the run's
  process as their parent; either way they die with the run (``PR_SET_PDEATHSIG``)
  and their environment holds no database credential (``storage.secret_env``);
- at most ``max_idle`` workers wait idle (the oldest is closed first), and before a
  worker is started the longest-idle ones are closed while idle, lent and warming
  workers together would pass ``max_idle``: memory stays bounded by the cores, as before.

On a cluster there is no depot (each Pod is its own machine): ``Worker`` starts its
own process, as it does when ``DRIFTLAB_WORKER_DEPOT`` is unset or unreachable.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftlab import settings
from driftlab.config.profiles import PROFILE_ENV_KEYS
from driftlab.runs import forkserver
from driftlab.storage import temp_folders

SOCKET_NAME = "workers.sock"
HELLO_TIMEOUT_S = 600.0  # a worker's first line (TensorFlow imported); a cold import on a busy node is slow
#: The variables that make two workers interchangeable: the profile's knobs and identity.
KEY_VARS = (*PROFILE_ENV_KEYS, settings.PROFILE.name, settings.PROFILE_KIND.name, settings.NODE_SELECTOR.name,
            "CUDA_VISIBLE_DEVICES")


def profile_key(env: dict[str, str]) -> str:
    """What a lent worker must share with the task's own: the profile's variables, as one string."""
    return json.dumps({k: env.get(k) for k in KEY_VARS}, sort_keys=True)


def read_line(fd: int, deadline: float) -> bytes:
    """One line from a raw pipe, reading no byte past it (the rest belongs to whoever reads next)."""
    out = bytearray()
    while not out.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError("no line in time")
        chunk = os.read(fd, 1)
        if not chunk:
            break
        out += chunk
    return bytes(out)


class _LogTee:
    """A worker's stderr, copied line by line into its log file once the run's log folder is known.

    A worker started before ``driftlab run`` has a home (warmed while the experiment is
    validated, when nothing may be written yet) keeps its first lines in memory (at most
    ``EARLY_LOG_BYTES``) and writes them out with the rest when the folder is set.
    """

    EARLY_LOG_BYTES = 1 << 20

    def __init__(self, depot: "Depot", stream, name: str):
        self.depot, self.stream, self.name = depot, stream, name
        self.early: list[bytes] = []
        self.kept = 0
        self.file = None
        self.thread = threading.Thread(target=self._copy, name=f"depot-log-{name}", daemon=True)
        self.thread.start()

    def _target(self):
        if self.file is None and self.depot.log_dir:
            self.file = open(os.path.join(self.depot.log_dir, self.name), "ab")
            self.file.writelines(self.early)
            self.early = []
        return self.file

    def _copy(self) -> None:
        try:
            for line in iter(self.stream.readline, b""):
                target = self._target()
                if target is not None:
                    target.write(line)
                    target.flush()
                elif self.kept < self.EARLY_LOG_BYTES:
                    self.early.append(line)
                    self.kept += len(line)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError, ValueError):
                if self._target() is not None:
                    self.file.close()


@dataclass
class _Warm:
    proc: subprocess.Popen | forkserver.Forked
    key: str
    hello: dict[str, Any]
    tee: _LogTee | None = None
    lent: int = 0  # times lent out

    def close(self) -> None:
        """Let an idle worker exit: stdin closed, then killed if it does not exit within a second."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._close_pipes()

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        self._close_pipes()
        return code

    def _close_pipes(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdout.close()
        if self.tee is not None:
            self.tee.thread.join(timeout=5)


@dataclass
class _Pending:
    """A worker being started ahead of need (``prewarm``): claimed by the first task of its profile."""
    key: str
    future: Future
    claimed: bool = False
    done: threading.Event = field(default_factory=threading.Event)  # set once ready, failed or handed over


class Depot:
    """The server side: a socket, a spawning thread, idle workers by profile."""

    def __init__(self, folder: Path, *, log_dir: str | None = None, max_idle: int = 2):
        self.path = Path(folder) / SOCKET_NAME
        self.log_dir, self.max_idle = log_dir, max(0, max_idle)
        self.started = self.lent = 0
        self._idle: list[_Warm] = []
        self._pending: list[_Pending] = []
        self._out = 0  # workers lent out now
        self._lock = threading.Lock()
        self._servers: dict[str, forkserver.ForkServer | None] = {}  # by interpreter setup; the spawner's only
        self._spawns: queue.Queue[tuple[dict[str, str], Future] | None] = queue.Queue()
        self._closed = threading.Event()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self._server.listen(16)
        self._threads = [threading.Thread(target=self._spawner, name="depot-spawner", daemon=True),
                         threading.Thread(target=self._accept, name="depot-accept", daemon=True)]
        for t in self._threads:
            t.start()

    # -- spawning: one long-lived thread, so PR_SET_PDEATHSIG ties the workers to this run ----------------------
    def _spawner(self) -> None:
        while (item := self._spawns.get()) is not None:
            env, done = item
            try:
                done.set_result(self._popen(env))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting connection
                done.set_exception(exc)

    def _popen(self, env: dict[str, str]) -> subprocess.Popen | forkserver.Forked:
        from driftlab.storage.secret_env import child_env, hide_from_proc

        hide_from_proc()
        env = {**child_env(env), settings.PARENT_PID.name: str(os.getpid())}
        server = self._fork_server(env) if forkserver.enabled() else None
        if server is not None:
            try:
                return server.spawn(env)
            except (OSError, RuntimeError, ValueError):
                server.close()  # the next worker starts a new one, or its own interpreter
        return subprocess.Popen([sys.executable, "-m", "driftlab.runs.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0)

    def _fork_server(self, env: dict[str, str]) -> forkserver.ForkServer | None:
        """The fork server for ``env``'s interpreter setup (started here, in the spawning thread), else None."""
        key = forkserver.template_key(env)
        server = self._servers.get(key)
        if server is not None and server.alive:
            return server
        if key in self._servers and server is None:
            return None  # it could not start: workers of this setup start their own interpreter
        log = str(Path(self.log_dir) / f"forkserver-run{os.getpid()}-{len(self._servers) + 1}.log") \
            if self.log_dir else None
        try:
            self._servers[key] = forkserver.ForkServer(env, log)
        except (OSError, RuntimeError, ValueError):
            self._servers[key] = None
        return self._servers[key]

    def _start(self, env: dict[str, str]) -> _Warm:
        """Start a worker (in the spawning thread) and wait for its first line."""
        done: Future = Future()
        self._spawns.put((env, done))
        proc = done.result()
        with self._lock:
            self.started += 1
            number = self.started
        name = f"worker-{env.get(settings.PROFILE.name, 'profile')}-run{os.getpid()}-{number}.log"
        tee = _LogTee(self, proc.stderr, name)
        try:
            line = read_line(proc.stdout.fileno(), time.monotonic() + HELLO_TIMEOUT_S)
        except TimeoutError:
            line = b""
        hello = json.loads(line) if line.strip() else {"died": proc.poll()}
        return _Warm(proc, profile_key(env), hello, tee)

    def prewarm(self, env: dict[str, str]) -> None:
        """Start a worker of ``env``'s profile now, for the tasks to come."""
        pending = _Pending(profile_key(env), Future())
        with self._lock:
            self._pending.append(pending)
        threading.Thread(target=self._warm_up, args=(env, pending), name="depot-prewarm", daemon=True).start()

    def prewarm_in_turn(self, envs: list[dict[str, str]]) -> None:
        """Start one worker of each of ``envs``, one after another, once the workers being started now are ready.

        For the profiles of later stages (``driftlab run``: the node profiles). Their TensorFlow
        imports then use the core a run leaves free while it is checked, while its small tasks
        run and between a stage's runs, instead of holding up the stage that needs them; one at
        a time, so they never take both cores from the stage at hand.
        """
        with self._lock:
            before = [p.done for p in self._pending]

        def start_each() -> None:
            for done in before:
                done.wait(HELLO_TIMEOUT_S)
            for env in envs:
                pending = _Pending(profile_key(env), Future())
                with self._lock:
                    if self._closed.is_set():
                        return
                    self._pending.append(pending)
                self._warm_up(env, pending)

        threading.Thread(target=start_each, name="depot-prewarm-in-turn", daemon=True).start()

    def _warm_up(self, env: dict[str, str], pending: _Pending) -> None:
        try:
            warm = self._start(env)
        except BaseException as exc:  # noqa: BLE001 - the claimant, if any, sees it
            warm = exc
        with self._lock:
            self._pending.remove(pending)
            claimed = pending.claimed
        pending.done.set()
        if claimed:
            pending.future.set_exception(warm) if isinstance(warm, BaseException) else pending.future.set_result(warm)
        elif isinstance(warm, _Warm):
            if "ready" in warm.hello:
                self._give_back(warm)
            else:
                warm.kill()

    # -- lending ----------------------------------------------------------------------------------------------
    def _take(self, key: str) -> _Warm | None:
        """An idle worker of this profile, else one being started ahead (waited for), else None."""
        with self._lock:
            for warm in self._idle:
                if warm.key == key and warm.proc.poll() is None:
                    self._idle.remove(warm)
                    return warm
            pending = next((p for p in self._pending if p.key == key and not p.claimed), None)
            if pending is not None:
                pending.claimed = True
        if pending is None:
            return None
        try:
            return pending.future.result()
        except BaseException:  # noqa: BLE001 - the caller starts one of its own
            return None

    def _give_back(self, warm: _Warm) -> None:
        evicted = []
        with self._lock:
            if self._closed.is_set() or self.max_idle == 0:
                evicted.append(warm)
            else:
                self._idle.append(warm)  # the list is in order of going idle
                while len(self._idle) > self.max_idle:
                    evicted.append(self._idle.pop(0))  # the longest idle
        for old in evicted:
            old.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="depot-lease", daemon=True).start()

    def _make_room(self) -> None:
        """Before starting a worker: close the longest-idle ones while the run would hold more than ``max_idle``.

        Workers lent out and being warmed count too, so a stage of another profile does not
        keep the previous stage's idle workers (and their memory) beside its own.
        """
        evicted = []
        with self._lock:
            while self._idle and len(self._idle) + self._out + len(self._pending) + 1 > self.max_idle:
                evicted.append(self._idle.pop(0))
        for old in evicted:
            old.close()

    def _serve(self, conn: socket.socket) -> None:
        warm, leased = None, False
        with conn:
            reader = conn.makefile("rb")
            try:
                request = json.loads(reader.readline() or b"{}")
                env = request.get("env")
                if not isinstance(env, dict):
                    return
                key = profile_key(env)
                warm = self._take(key)
                fresh = warm is None
                if fresh:
                    self._make_room()
                    warm = self._start(env)
                warm.lent += 1
                with self._lock:
                    self.lent += 1
                    self._out += 1
                leased = True
                reply = {**warm.hello, "pid": warm.proc.pid, "warm": not fresh, "lent": warm.lent}
                if "died" in warm.hello or "refused" in warm.hello:
                    conn.sendall((json.dumps(reply) + "\n").encode())
                    warm.kill()
                    warm = None
                    return
                socket.send_fds(conn, [(json.dumps(reply) + "\n").encode()],
                                [warm.proc.stdin.fileno(), warm.proc.stdout.fileno()])
                # The lease lasts while the connection is open. "release": the worker answered
                # everything it was sent and goes back to the pool; anything else ends it.
                while True:
                    line = reader.readline()
                    if not line:
                        break
                    message = json.loads(line)
                    if message.get("release") and warm.proc.poll() is None:
                        self._give_back(warm)
                        warm = None
                        break
                    if message.get("exit_code"):
                        code = warm.kill()
                        conn.sendall((json.dumps({"exit_code": code}) + "\n").encode())
                        warm = None
                        break
            except (OSError, ValueError):
                pass
            finally:
                if warm is not None:
                    warm.kill()
                if leased:
                    with self._lock:
                        self._out -= 1

    def close(self) -> None:
        """Stop lending; close every idle worker (a worker still lent dies with its task's connection)."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.close()
        with self._lock:
            idle, self._idle = self._idle, []
        for warm in idle:  # before the spawning thread ends: the fork servers (and their workers) die with it
            warm.close()
        self._spawns.put(None)
        for server in list(self._servers.values()):
            if server is not None:
                server.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


MAX_SOCKET_PATH = 100  # Linux refuses a Unix socket path over 107 bytes
_active: Depot | None = None  # the depot this process serves, if any


@contextlib.contextmanager
def serving(folder: Path | None = None, *, log_dir: str | None = None, max_idle: int = 2) -> Iterator[Depot]:
    """Run a depot for the duration of the block, with ``DRIFTLAB_WORKER_DEPOT`` pointing at it.

    The socket lives in a private folder (mode 0700) made inside ``folder`` (the run's own
    temporary folder; default: the system's), or in ``/tmp`` when that path is too long for
    a socket; the folder is removed when the block ends. Nested in a block of the same
    process, it serves the outer depot (``driftlab run`` starts it before validating, the
    pipeline gives it the log folder).
    """
    global _active
    import shutil
    import tempfile

    if _active is not None:
        if log_dir:
            _active.log_dir = log_dir
        yield _active
        return
    base = Path(folder or tempfile.gettempdir())
    if len(str(base)) + 40 > MAX_SOCKET_PATH:
        base = Path("/tmp")
    temp_folders.sweep(base)  # socket folders of killed runs
    private = Path(tempfile.mkdtemp(prefix="driftlab-workers-", dir=base))
    try:
        temp_folders.claim(private)
        depot = Depot(private, log_dir=log_dir, max_idle=max_idle)
    except BaseException:
        shutil.rmtree(private, ignore_errors=True)
        raise
    before = os.environ.get(settings.WORKER_DEPOT.name)
    os.environ[settings.WORKER_DEPOT.name] = str(depot.path)
    _active = depot
    try:
        yield depot
    finally:
        _active = None
        if before is None:
            os.environ.pop(settings.WORKER_DEPOT.name, None)
        else:
            os.environ[settings.WORKER_DEPOT.name] = before
        depot.close()
        shutil.rmtree(private, ignore_errors=True)


class Lease:
    """The task side: a lent worker's pipes, shaped like the ``subprocess.Popen`` a ``Worker`` uses."""

    def __init__(self, conn: socket.socket, hello: dict[str, Any], fds: list[int]):
        self._conn, self.hello = conn, hello
        self.pid = int(hello.get("pid") or 0)
        self.warm = bool(hello.get("warm"))
        self.stdin = os.fdopen(fds[0], "w", buffering=1)
        self.stdout = os.fdopen(fds[1], "r")
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def kill(self) -> None:
        """End the lease without giving the worker back: the depot kills it."""
        if self.returncode is None:
            self.returncode = -9
            self._end()

    def wait(self, timeout: float | None = None) -> int:
        """The worker's exit code once it stopped answering (the depot reaps it)."""
        if self.returncode is None:
            try:
                self._conn.sendall(b'{"exit_code": true}\n')
                self._conn.settimeout(timeout or 30)
                line = self._conn.makefile("rb").readline()
                self.returncode = int(json.loads(line).get("exit_code", -1)) if line else -1
            except (OSError, ValueError):
                self.returncode = -1
            self._end()
        return self.returncode

    def release(self) -> None:
        """Give the worker back to the depot (it is between runs)."""
        if self.returncode is None:
            self.returncode = 0
            with contextlib.suppress(OSError):
                self._conn.sendall(b'{"release": true}\n')
            self._end()

    def _end(self) -> None:
        for f in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):
                f.close()
        with contextlib.suppress(OSError):
            self._conn.close()


def borrow(env: dict[str, str]) -> Lease | None:
    """A worker for ``env``'s profile from the run's depot; None when there is no depot to ask."""
    path = settings.WORKER_DEPOT.raw()
    if not path:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        conn.settimeout(HELLO_TIMEOUT_S + 30)
        conn.sendall((json.dumps({"env": env}) + "\n").encode())
        message, fds, _, _ = socket.recv_fds(conn, 1 << 16, 2)
    except OSError:
        conn.close()
        return None
    if not message:
        conn.close()
        return None
    conn.settimeout(None)
    hello = json.loads(message.decode().splitlines()[0])
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        conn.close()
        return _Refused(hello)
    return Lease(conn, hello, fds)


class _Refused(Lease):
    """A depot's answer without a worker: it refused the profile, or died starting."""

    def __init__(self, hello: dict[str, Any]):  # noqa: D107 - no pipes
        self.hello, self.pid, self.warm, self.returncode = hello, int(hello.get("pid") or 0), False, 1
        self.stdin = self.stdout = None
