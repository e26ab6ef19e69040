"""Blocks of stored runs measured in helper processes, so that aggregation uses every core.

``stream.measure_all`` measures a campaign block by block. In one process its threads share one
interpreter: fetching rows, decoding them and a block's many small NumPy calls hold it, so a
second thread gains little (on 2 cores, 3 threads measured 50,000 records slower than one).
When the runs are stored in a results database (a ``Store``: it has a ``url``) and there are
at least ``MIN_RUNS`` of them, the parts go to helper processes (``driftlab.drift.helpers.main``
in a fresh interpreter): each opens the database itself, reads its part's arrays, measures the
part's groups with the same code (``stream._measure``) and sends back each group's ``GroupStats``
and each run's shape (with a regression run's floor SEs). The parent sends run keys and group
layouts only, and holds no arrays meanwhile; the numbers are those the parent would compute.

- How many: ``DRIFTLAB_AGGREGATE_HELPERS`` (0: measure in this process), by default one per
  usable core up to ``MAX_HELPERS``; none on a single core.
- Started while the records are still being read (``expect``), so their start-up overlaps it.
- The database URL, and any credential the environment holds (``storage.secret_env``), reach a
  helper through its standard input, never its command line or its environment.
- A helper that dies (killed, out of memory) leaves its parts to the parent, which measures them
  itself; an error a helper meets while measuring (the arrays gone, the database unreachable
  past its retries) is raised in the parent as it is.
- Once the parts are measured the helpers are idle while the parent compares the groups: the
  variance shares' bootstrap (``variance.factorial_draws``) runs in one of them meanwhile
  (``call``), on the core the parent leaves free.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading
from typing import IO, Any, Sequence

import numpy as np

from driftlab import settings
from driftlab.errors import BadInput

MIN_RUNS = 2_000  # below this a helper's start-up (about 0.4 s) costs more than it saves
MAX_HELPERS = 8
_LENGTH = struct.Struct("!Q")


def helper_count() -> int:
    """``DRIFTLAB_AGGREGATE_HELPERS``, or one per usable core (affinity and a pod's CPU limit; at most
    MAX_HELPERS; none on one core)."""
    raw = settings.AGGREGATE_HELPERS.raw()
    if raw:
        if not raw.isdigit():
            raise BadInput(f"{settings.AGGREGATE_HELPERS.name}: '{raw}' is not a whole number >= 0; unset it, "
                           "or use 0 to measure in the aggregating process itself")
        return min(int(raw), 64)
    from driftlab.runs.executor import available_cpus  # affinity, capped by a pod's CPU limit

    cores = available_cpus()
    return 0 if cores < 2 else min(cores, MAX_HELPERS)


def send(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def receive(stream: IO[bytes]) -> Any:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the helper's pipe closed")
    size = _LENGTH.unpack(head)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the helper's pipe closed mid-message")
    return pickle.loads(data)


def distinct(runs: Sequence[Any]) -> list[Any]:
    """The runs once each, in order: a part's runs as its request lists them and its reply's shapes follow."""
    return list({id(r): r for r in runs}.values())


def part_request(runs: Sequence[Any], wanted: Sequence[Any], budget: int, floors: bool) -> dict[str, Any]:
    """What a helper needs of a part: its distinct runs' keys, each wanted group as indices into them."""
    once = distinct(runs)
    index = {id(r): i for i, r in enumerate(once)}
    groups = [(tuple(index[id(r)] for r in w.group), w.examples, w.corr) for w in wanted]
    return {"runs": [(r.key, r.weights_kind) for r in once], "groups": groups, "budget": budget, "floors": floors}


class Helpers:
    """Helper processes measuring parts for one analysis (``with`` closes them)."""

    def __init__(self, url: str, task: str, count: int, min_runs: int | None = None):
        self.url, self.task, self.count = url, task, count
        self.min_runs = MIN_RUNS if min_runs is None else min_runs
        self.procs: list[subprocess.Popen] = []
        self._call_lock = threading.Lock()

    @classmethod
    def for_arrays(cls, arrays: Any, task: str) -> "Helpers | None":
        """Helpers for an array source that is a results database, or None (records in memory, one core)."""
        url = getattr(arrays, "url", None)
        count = helper_count() if isinstance(url, str) else 0
        return cls(url, task, count) if count else None

    def __enter__(self) -> "Helpers":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def started(self) -> bool:
        return bool(self.procs)

    def expect(self, n_runs: int) -> None:
        """Start the helpers once ``n_runs`` stored runs make them worth it (called while reading records)."""
        if not self.procs and n_runs >= self.min_runs:
            self.procs = [self._start() for _ in range(self.count)]

    def _start(self) -> subprocess.Popen:
        from driftlab.storage.secret_env import child_env, secrets_in

        # Started without any credential in its environment (another process of the user may read a
        # process's /proc/<pid>/environ); the URL and the credentials it needs arrive through the pipe.
        proc = subprocess.Popen([sys.executable, "-c", "from driftlab.drift.helpers import main; main()"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, env=child_env())
        try:
            send(proc.stdin, {"url": self.url, "task": self.task, "secrets": secrets_in(os.environ)})
        except OSError:
            pass  # it died at once: its thread finds out and leaves its parts to the parent
        return proc

    def measure_parts(self, parts: Sequence[Sequence[Any]], work: Sequence[Sequence[Any]], measured: Any,
                      budget: int, floors: Sequence[bool]) -> list[int]:
        """Measure ``parts`` (runs) for their ``work`` (``Wanted`` groups) into ``measured``, each run given its
        shape (and, where ``floors``, its regression floor SEs); returns the parts left to measure in this
        process (their helper died)."""
        def done(i: int, reply: dict[str, Any]) -> None:
            for j, (r, shape) in enumerate(zip(distinct(parts[i]), reply["shapes"])):
                r.shape, r.n_eval = tuple(shape), int(shape[0])
                if reply["floors"] is not None:
                    r.row_se = reply["floors"][j]
            for w, s in zip(work[i], reply["stats"]):
                measured.put(w.group, s)

        return self.measure(len(parts), lambda i: part_request(parts[i], work[i], budget, floors[i]), done)

    def measure(self, parts: int, request: Any, done: Any) -> list[int]:
        """Send each part's ``request(i)`` to a free helper (built as it is sent, so that the first helpers start
        at once) and call ``done(i, reply)`` with each reply (one at a time). Returns the parts no helper
        measured (their helper died)."""
        lock = threading.Lock()
        todo = iter(range(parts))
        left: list[int] = []
        errors: list[BaseException] = []

        def serve(proc: subprocess.Popen) -> None:
            while not errors:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                message = request(i)
                try:
                    send(proc.stdin, message)
                    reply = receive(proc.stdout)
                except (OSError, EOFError, pickle.UnpicklingError):
                    with lock:
                        left.append(i)
                    return
                with lock:
                    if "error" in reply:
                        errors.append(reply["error"])
                        return
                    done(i, reply)

        threads = [threading.Thread(target=serve, args=(p,), name="driftlab-helper", daemon=True)
                   for p in self.procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        left += list(todo)  # every helper died before these were sent
        return sorted(left)

    def call(self, name: str, *args: Any) -> Any:
        """``CALLS[name](*args)`` in a helper (the first one alive), or here when none is."""
        with self._call_lock:
            for proc in self.procs:
                if proc.poll() is not None:
                    continue
                try:
                    send(proc.stdin, {"call": name, "args": args})
                    reply = receive(proc.stdout)
                except (OSError, EOFError, pickle.UnpicklingError):
                    continue
                if "error" in reply:
                    raise reply["error"]
                return reply["value"]
        return _callable(name)(*args)

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        self.procs = []


# -- the helper process -------------------------------------------------------------------------------------------
#: What ``Helpers.call`` may run in a helper: pure NumPy work the stage would otherwise do alone on one core.
CALLS = {"variance_draws": ("driftlab.drift.variance", "factorial_draws")}


def _callable(name: str) -> Any:
    import importlib

    module, attr = CALLS[name]
    return getattr(importlib.import_module(module), attr)


def _light_run(key: str, weights_kind: str | None) -> Any:
    from driftlab.drift.runs import Run

    return Run(key=key, profile="", init_seed=0, shuffle_seed=0, split_seed=0, repeat=0, deterministic=False,
               metrics={}, loss=np.empty(0), predictions=None, labels=None, weights=None, weights_kind=weights_kind,
               weights_digest=None, fit_s=None, n_eval=0, stored=True)


def measure_request(store: Any, task: str, request: dict[str, Any]) -> dict[str, Any]:
    """One part, measured: every group's GroupStats (in the request's order) and every run's shape."""
    from driftlab.drift.comparisons import Wanted
    from driftlab.drift.floors import row_ses
    from driftlab.drift.groupstats import Measured, group_key
    from driftlab.drift.stream import Reader, _measure

    runs = [_light_run(key, kind) for key, kind in request["runs"]]
    wanted = [Wanted([runs[j] for j in idx], examples, corr) for idx, examples, corr in request["groups"]]
    measured = Measured(task)
    reader = Reader(store, task)
    with reader.holding(runs):
        floors = [row_ses(r) for r in runs] if request["floors"] else None
        _measure(wanted, measured, request["budget"])
        shapes = [r.shape for r in runs]
    return {"shapes": shapes, "floors": floors, "stats": [measured.table[group_key(w.group)] for w in wanted]}


def main() -> None:
    """Serve parts on stdin/stdout until stdin closes (see the module docstring)."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print goes to stderr, never into the replies
    source = sys.stdin.buffer
    try:
        hello = receive(source)
    except EOFError:
        return
    os.environ.update(hello["secrets"])  # after start-up: never in this process's /proc/<pid>/environ
    from driftlab.storage.store import Store

    store = Store(hello["url"])
    while True:
        try:
            request = receive(source)
        except EOFError:
            return
        try:
            if "call" in request:
                reply = {"value": _callable(request["call"])(*request["args"])}
            else:
                reply = measure_request(store, hello["task"], request)
        except Exception as exc:  # noqa: BLE001  the parent raises it as it is
            try:
                pickle.dumps(exc)
            except Exception:  # noqa: BLE001
                exc = RuntimeError(f"{type(exc).__name__}: {exc}")
            reply = {"error": exc}
        send(out, reply)

