"""Who owns an execution, whether it still runs, and its sign of life.

``driftlab run`` records its own process on its execution row: the host name,
the pid and the process's start (``<boot id>:<pid namespace>@<start ticks>``,
read from ``/proc``). Another process judges that owner with ``state``:

* ``DEAD``: same host, same boot and PID namespace, and the pid is gone, a
  zombie, or started at another time (the number was reused);
* ``ALIVE``: the same process is still there;
* ``UNKNOWN``: another machine or container, or no ``/proc`` to tell a reused
  pid apart. The caller then goes by the last sign of life (``stale_after``).

``Heartbeat`` refreshes the sign of life from a daemon thread while the owner
runs, every ``heartbeat_every()`` seconds (a fifth of the stale threshold, at
most a minute).
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from typing import Callable

from driftlab import settings
from driftlab.errors import BadInput

ALIVE, DEAD, UNKNOWN = "alive", "dead", "unknown"
MAX_HEARTBEAT_S = 60.0
MIN_HEARTBEAT_S = 1.0


@dataclass(frozen=True)
class Owner:
    """A process, as an execution row records it."""

    host: str
    pid: int
    start: str | None  # "<machine>@<ticks>"; None where /proc cannot tell


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _machine() -> str | None:
    """This boot of this kernel and this PID namespace: where pid numbers mean the same process."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    if not boot:
        return None
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{boot}:{namespace}"


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start ticks since boot) of ``pid`` from /proc/<pid>/stat; None when there is no such process."""
    text = _read(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name, in parentheses, may hold spaces
    return (fields[0], fields[19]) if len(fields) > 19 else None


def this_process() -> Owner:
    pid = os.getpid()
    machine, stat = _machine(), _stat(pid)
    return Owner(socket.gethostname(), pid, f"{machine}@{stat[1]}" if machine and stat else None)


def state(host: str | None, pid: int | None, start: str | None) -> str:
    """``ALIVE``, ``DEAD`` or ``UNKNOWN`` for the recorded owner (see the module docstring)."""
    if not host or pid is None or host != socket.gethostname():
        return UNKNOWN
    machine = _machine()
    if start is None or machine is None:
        if start is not None or machine is not None:
            return UNKNOWN  # recorded with /proc and judged without, or the reverse
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return DEAD
        except OSError:
            return UNKNOWN
        return UNKNOWN  # a pid number may have been reused: only the last sign of life can tell
    recorded_machine, _, ticks = start.rpartition("@")
    if recorded_machine != machine:
        return UNKNOWN
    stat = _stat(pid)
    if stat is None or stat[0] in ("Z", "X") or stat[1] != ticks:
        return DEAD
    return ALIVE


def stale_after() -> float:
    """Seconds without a sign of life that make an unjudgeable execution abandoned (DRIFTLAB_EXECUTION_STALE_S)."""
    value = settings.positive_int(settings.EXECUTION_STALE_S.name, example=900, error=BadInput)
    return float(value if value is not None else settings.EXECUTION_STALE_S.default)


def heartbeat_every() -> float:
    return min(MAX_HEARTBEAT_S, max(MIN_HEARTBEAT_S, stale_after() / 5))


class Heartbeat:
    """Call ``beat`` every ``every`` seconds from a daemon thread while the ``with`` block runs.

    A beat that fails (the database away for a moment) is skipped: the next one comes.
    """

    def __init__(self, beat: Callable[[], None], every: float):
        self._beat, self._every = beat, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="driftlab-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 - a missed beat is harmless; the owner's work goes on
                pass

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
