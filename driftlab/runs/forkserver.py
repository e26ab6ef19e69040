"""Training workers forked from a process that has already imported TensorFlow.

A worker's start was one TensorFlow import: about 4-5 s of one core, paid again by every
worker of a local ``driftlab run`` (two per profile). The depot now starts one *fork server*
per interpreter setup: ``python -m driftlab.runs.forkserver FD`` imports TensorFlow, Keras
and driftlab's training modules once, runs no TensorFlow op, and then, for each request on
its socket, forks a child that becomes a worker (``worker.main``) with the request's
environment and pipes. The child initialises TensorFlow's runtime itself, after its
profile's knobs are in its environment, so it computes what a fresh worker would:

- the knobs TensorFlow and oneDNN read when the runtime starts, not at import (the ISA cap
  ``ONEDNN_MAX_CPU_ISA``, the intra/inter-op threads, the profile's identity) may differ
  between the workers of one fork server (``LATE_VARS``);
- every other variable (``TF_ENABLE_ONEDNN_OPTS``, read at import, ``PYTHONPATH``,
  ``PYTHONHASHSEED``, ``OMP_NUM_THREADS``, ...) picks the fork server: workers that differ
  in any of them come from different ones (``template_key``);
- ``tests/runs/test_forkserver.py`` checks the digests of forked workers against fresh
  processes, per ISA cap (and that the caps really change them: the control).

The fork server's environment holds no database credential (the depot's workers never
did), it dies with the depot's spawning thread (``PR_SET_PDEATHSIG``) and its workers die
with it. It reaps its children and reports each exit code on its socket, so the depot sees
a forked worker as a ``subprocess.Popen`` (``Forked``). ``settings.FORK_WORKERS`` set to 0 turns it
off (each worker its own interpreter, as before); if a fork server cannot start or dies,
the depot starts workers the old way.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

from driftlab import settings

#: Read when TensorFlow's runtime starts (first op), not at import: workers of one fork server may differ in them.
LATE_VARS = frozenset({"ONEDNN_MAX_CPU_ISA", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                       settings.PROFILE.name, settings.PROFILE_KIND.name, settings.NODE_SELECTOR.name,
                       settings.PARENT_PID.name})
READY_TIMEOUT_S = 600.0  # the fork server's imports on a busy machine
PR_SET_NAME = 15


def template_key(env: dict[str, str]) -> str:
    """What two workers' fork server must share: their environment, less what is read after the fork."""
    return json.dumps({k: v for k, v in env.items() if k not in LATE_VARS}, sort_keys=True)


def enabled() -> bool:
    return settings.FORK_WORKERS.get() != "0"


class Forked:
    """A worker forked by a fork server, shaped like the ``subprocess.Popen`` the depot keeps."""

    def __init__(self, server: "ForkServer", pid: int, stdin, stdout, stderr):
        self._server, self.pid = server, pid
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = self._server.wait_exit(self.pid, timeout)
            if code is None:
                raise subprocess.TimeoutExpired(f"forked worker {self.pid}", timeout)
            self.returncode = code
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


class ForkServer:
    """The depot's side of one fork server. Start it from the thread its workers must die with."""

    def __init__(self, env: dict[str, str], log_path: str | None = None):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "driftlab.runs.forkserver", str(theirs.fileno())],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                         env=env, pass_fds=[theirs.fileno()])
        finally:
            theirs.close()
            if log is not subprocess.DEVNULL:
                log.close()
        self._sock = ours
        self._reader = ours.makefile("rb")
        self._exits: dict[int, int] = {}
        self._replies: list[dict[str, Any]] = []
        self._alive = True
        self._cond = threading.Condition()
        self._request_lock = threading.Lock()
        ready, _, _ = select.select([ours], [], [], READY_TIMEOUT_S)
        hello = json.loads(self._reader.readline() or b"{}") if ready else {}
        if not hello.get("ready"):
            self.close()
            raise RuntimeError(f"the fork server did not start (exit code {self.proc.poll()})")
        threading.Thread(target=self._listen, name="forkserver-listen", daemon=True).start()

    @property
    def alive(self) -> bool:
        return self._alive and self.proc.poll() is None

    def _listen(self) -> None:
        for line in self._reader:
            message = json.loads(line)
            with self._cond:
                if "exited" in message:
                    self._exits[int(message["exited"])] = int(message["code"])
                else:
                    self._replies.append(message)
                self._cond.notify_all()
        with self._cond:
            self._alive = False
            self._cond.notify_all()

    def spawn(self, env: dict[str, str]) -> Forked:
        """Fork a worker with ``env`` and fresh pipes, as ``subprocess.Popen([... worker], env=env)`` would."""
        pipes = [os.pipe() for _ in range(3)]  # stdin, stdout, stderr: (read end, write end)
        theirs = [pipes[0][0], pipes[1][1], pipes[2][1]]
        try:
            with self._request_lock:
                socket.send_fds(self._sock, [(json.dumps({"env": env}) + "\n").encode()], theirs)
                with self._cond:
                    self._cond.wait_for(lambda: self._replies or not self._alive, READY_TIMEOUT_S)
                    if not self._replies:
                        raise RuntimeError("the fork server is gone")
                    reply = self._replies.pop(0)
        except BaseException:
            for fd in (pipes[0][1], pipes[1][0], pipes[2][0]):
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        return Forked(self, int(reply["pid"]), os.fdopen(pipes[0][1], "wb", buffering=0),
                      os.fdopen(pipes[1][0], "rb", buffering=0), os.fdopen(pipes[2][0], "rb", buffering=0))

    def exit_code(self, pid: int) -> int | None:
        with self._cond:
            if pid in self._exits:
                return self._exits[pid]
            if self._alive:
                return None
        return _gone_code(pid)

    def wait_exit(self, pid: int, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._cond.wait_for(lambda: pid in self._exits or not self._alive, timeout)
        while (code := self.exit_code(pid)) is None and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.02)  # the fork server is gone: its workers die with it (SIGTERM)
        return code

    def close(self) -> None:
        """Stop the fork server (workers it forked die with it)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        with contextlib.suppress(OSError):
            self._sock.close()


def _gone_code(pid: int) -> int | None:
    """A worker whose fork server died: still running (None), else killed with it (SIGTERM)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return -signal.SIGTERM
    return -signal.SIGTERM if state in ("Z", "X") else None


# -- the fork server process ----------------------------------------------------------------------------------
def _preload() -> None:
    import keras  # noqa: F401 - imported once here, for every worker forked from this process
    import tensorflow  # noqa: F401

    from driftlab.runs import build_check, codec, failures, fingerprint, training, worker  # noqa: F401
    from driftlab.runs.spec import RunSpec  # noqa: F401


def _become_worker(env: dict[str, str], fds: list[int], closing: list[int]) -> None:
    """In the forked child: take the request's pipes as stdio and its environment, then serve as a worker."""
    for fd in closing:
        with contextlib.suppress(OSError):
            os.close(fd)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    os.environ[settings.PARENT_PID.name] = str(os.getppid())  # the fork server: the worker dies with it
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8",
                                  line_buffering=True, write_through=True)
    sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True, write_through=True)
    from driftlab.runs import worker

    if sys.platform.startswith("linux"):  # `top` and `ps -o comm` name it (its command line stays the fork server's)
        import ctypes

        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_NAME, b"driftlab-worker")
    sys.argv = [worker.__file__]
    worker.main()  # exits the process


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        sock.sendall((json.dumps({"exited": pid, "code": os.waitstatus_to_exitcode(status)}) + "\n").encode())


def serve(sock: socket.socket) -> None:
    """Answer each request (a JSON line with ``env`` and three fds) with the forked worker's pid; report exits."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    sock.sendall(b'{"ready": true}\n')
    pending, fds = b"", []
    while True:
        ready, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap(sock)
        if sock not in ready:
            continue
        data, more, _, _ = socket.recv_fds(sock, 1 << 20, 3)
        if not data:
            return
        pending, fds = pending + data, fds + more
        if b"\n" not in pending:  # the rest of the request is still on its way
            continue
        line, _, pending = pending.partition(b"\n")
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                _become_worker(request["env"], fds, [sock.fileno(), wake_r, wake_w])
            except BaseException:  # noqa: BLE001 - whatever it is, the worker's log shows it
                traceback.print_exc()
            os._exit(1)
        for fd in fds:
            os.close(fd)
        fds = []
        sock.sendall((json.dumps({"pid": pid}) + "\n").encode())


def main() -> None:
    from driftlab.runs import worker

    sock = socket.socket(fileno=int(sys.argv[1]))
    worker._die_with_parent(os.getppid())  # as a worker: Ctrl-C is the depot's to handle, SIGTERM with the depot
    _preload()
    serve(sock)
    os._exit(0)


if __name__ == "__main__":
    main()
