"""Execute run specs in worker processes, one profile per worker, and record them.

Each worker imports TensorFlow once with its profile's knobs and trains many
runs, with thread counts pinned by the profile, so that runs in parallel
workers compute exactly what they would compute alone. Specs are handed out
one at a time (the next goes to whichever worker is free), each record is
written to the results store the moment it arrives (a finished run is never
lost to an interruption), and keys already recorded are skipped, so an
interrupted stage resumes where it stopped and never trains a key twice.

Interruptions: on SIGINT (KeyboardInterrupt) the executor stops handing out
work, keeps every record already received, stops its workers and re-raises;
on SIGKILL the workers die with their parent (see ``driftlab.runs.worker``) and the
store holds every run received before the kill.
"""

from __future__ import annotations

import json
import math
import os
import queue
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from driftlab.contracts import RunRecord
from driftlab.errors import DriftlabError
from driftlab.config import ProfileConfig
from driftlab.config.profiles import PROFILE_ENV_KEYS, ProfileError, env_for
from driftlab.runs import depot
from driftlab.runs.spec import RunSpec
from driftlab.runs.timeouts import RunTimeout
from driftlab.storage.secret_env import child_env, hide_from_proc
from driftlab.storage.store import Store
from driftlab.runs.worker import decode_record
from driftlab import settings

MAX_WORKER_RESTARTS = 2
RESULT_POLL_S = 0.5  # the main thread wakes this often, so Ctrl-C is handled promptly


class WorkerDied(DriftlabError, RuntimeError):
    """A worker process that exited or closed its pipe."""


class RunTimedOut(DriftlabError, RuntimeError):
    """A run that did not answer within its time limit; its worker was killed."""

    def __init__(self, seconds: float):
        super().__init__(f"no answer within {seconds:.0f} s")
        self.seconds = seconds


EpochFn = Callable[[int, dict[str, float]], "str | None"]


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (a pod's limit)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def worker_env(profile: ProfileConfig, index: int = 0) -> dict[str, str]:
    """The environment of worker ``index`` of a profile: inherited, minus stale knobs, plus the profile's."""
    # Workers never touch the database (the parent records their runs), so no variable
    # holding a database credential is handed to them, nor to the user model code they run.
    env = {k: v for k, v in child_env().items() if k not in PROFILE_ENV_KEYS}
    env.update(env_for(profile))
    env["PYTHONUNBUFFERED"] = "1"
    env[settings.PARENT_PID.name] = str(os.getpid())
    env[settings.PROFILE.name] = profile.name
    env[settings.PROFILE_KIND.name] = profile.kind
    env[settings.NODE_SELECTOR.name] = json.dumps(dict(profile.node_selector), sort_keys=True)
    if profile.kind == "gpu" and profile.accelerator and profile.accelerator.count > 1:
        env["CUDA_VISIBLE_DEVICES"] = str(index % profile.accelerator.count)  # one GPU per worker
    return env


class Worker:
    """One ``python -m driftlab.runs.worker`` process bound to a profile.

    Create and use a worker from one thread: on Linux the process is told to
    exit when the thread that started it ends (``PR_SET_PDEATHSIG``).
    """

    def __init__(self, profile: ProfileConfig, log_path: str | None = None, *, index: int = 0):
        self.profile = profile
        self.runs, self._limit, self._busy = 0, 0.0, False
        self._log = subprocess.DEVNULL
        env = worker_env(profile, index)
        lease = depot.borrow(env)  # locally, `driftlab run` lends warm workers across its tasks
        if lease is not None:
            self.proc, self.warm, hello = lease, lease.warm, lease.hello
            if "died" in hello:
                raise WorkerDied(f"worker for profile '{profile.name}' exited with code {hello['died']} "
                                 "before it was ready")
        else:
            self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
            hide_from_proc()  # user code in the worker could read this process's /proc/<pid>/environ
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "driftlab.runs.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._log, env=env, text=True, bufsize=1)
            self.warm = False
            hello = self._read()
        if "refused" in hello:
            self.close()
            raise ProfileError(hello["refused"])
        self.fingerprint = hello["ready"]

    def _read(self, deadline: float | None = None) -> dict[str, Any]:
        if deadline is not None:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise RunTimedOut(self._limit)
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise WorkerDied(f"worker for profile '{self.profile.name}' exited with code {code}")
        return json.loads(line)

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise WorkerDied(f"worker for profile '{self.profile.name}' is gone") from None

    def run(self, spec: RunSpec, *, timeout_s: float | None = None, on_epoch: EpochFn | None = None
            ) -> RunRecord:
        """Train one spec in this worker and return its record.

        Args:
            spec: The run.
            timeout_s: Kill the worker and raise ``RunTimedOut`` if the record has not
                arrived after this many seconds (the worker is unusable afterwards).
            on_epoch: Called with (epoch, validation metrics) after each epoch; a
                returned reason stops the run there (its record's status is ``stopped``).
        """
        self._busy = True  # until its record is read: a worker in the middle of a run is never lent again
        self._send({"spec": spec.to_json(), "report_epochs": on_epoch is not None})
        self._limit = timeout_s or 0.0
        deadline = time.monotonic() + timeout_s if timeout_s else None
        while True:
            try:
                message = self._read(deadline)
            except RunTimedOut:
                self.kill()
                raise
            if "epoch" in message and "key" not in message:
                reason = on_epoch(int(message["epoch"]), message["values"]) if on_epoch else None
                self._send({"stop": bool(reason), "reason": reason or ""})
                continue
            self.runs += 1
            self._busy = False
            return decode_record(message)

    def check(self, request: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
        """``build_check.answer(request)`` in this worker; kill it and raise ``RunTimedOut`` past ``timeout_s``."""
        self._busy = True
        self._send({"check": request})
        self._limit = timeout_s
        try:
            answer = self._read(time.monotonic() + timeout_s)
        except RunTimedOut:
            self.kill()
            raise
        self._busy = False
        return answer["check"]

    def kill(self) -> None:
        """Stop at once (an interrupted stage): the run in progress is abandoned."""
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        """Let the worker finish and exit (stdin closed); kill it if it does not within 30 s.

        A lent worker goes back to the depot instead, unless it is in the middle of a run.
        """
        if isinstance(self.proc, depot.Lease):
            self.proc.kill() if self._busy else self.proc.release()
            return
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
            self._log = subprocess.DEVNULL


@dataclass
class ExecutionSummary:
    profile: str
    planned: int
    skipped: int
    trained: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # each failed run's error text (failures.describe)
    seconds: float = 0.0
    workers: int = 0


ProgressFn = Callable[[RunSpec, dict[str, Any]], None]


class _Pool:
    """``jobs`` threads, each owning one worker process, fed from one queue."""

    def __init__(self, profile: ProfileConfig, todo: list[RunSpec], jobs: int, log_dir: str | None,
                 timeout: RunTimeout):
        self.profile, self.log_dir, self.timeout = profile, log_dir, timeout
        self.work: queue.Queue[RunSpec] = queue.Queue()
        for spec in todo:
            self.work.put(spec)
        self.results: queue.Queue[tuple[RunSpec, dict[str, Any]] | BaseException] = queue.Queue()
        self.stop = threading.Event()
        self.workers: list[Worker] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._serve, args=(i,), daemon=True) for i in range(jobs)]
        for t in self.threads:
            t.start()

    def _start_worker(self, index: int) -> Worker:
        log_path = os.path.join(self.log_dir, f"worker-{self.profile.name}-{os.getpid()}-{index}.log") \
            if self.log_dir else None
        worker = Worker(self.profile, log_path, index=index)
        with self._lock:
            self.workers.append(worker)
        return worker

    def _serve(self, index: int) -> None:
        restarts, worker = 0, None
        try:
            while not self.stop.is_set():
                try:
                    spec = self.work.get_nowait()
                except queue.Empty:
                    return
                while not self.stop.is_set():
                    try:
                        if worker is None:
                            worker = self._start_worker(index)
                        t0 = time.monotonic()
                        record = worker.run(spec, timeout_s=self.timeout.seconds())
                        self.timeout.observe(time.monotonic() - t0)
                        self.results.put((spec, record))  # finished runs are kept, even when stopping
                        break
                    except RunTimedOut as exc:
                        worker.close()
                        worker = None  # the next run gets a fresh worker
                        self.results.put((spec, {"key": spec.key, "status": "failed",
                                                 "error": self.timeout.explain(exc.seconds)}))
                        break
                    except WorkerDied as exc:
                        worker = None
                        restarts += 1
                        if restarts > MAX_WORKER_RESTARTS and not self.stop.is_set():
                            self.results.put((spec, {"key": spec.key, "status": "failed", "error": str(exc)}))
                            break
        except BaseException as exc:  # surface to the main thread (e.g. a profile refused here)
            self.results.put(exc)
        finally:
            if worker is not None:
                worker.kill() if self.stop.is_set() else worker.close()

    def shutdown(self, *, interrupted: bool) -> None:
        if interrupted:
            self.stop.set()
            with self._lock:
                for w in self.workers:
                    w.kill()
        for t in self.threads:
            t.join(timeout=5 if interrupted else 60)


def execute(specs: list[RunSpec], profile: ProfileConfig, store: Store, experiment_id: int, *,
            jobs: int = 1, progress: ProgressFn | None = None, log_dir: str | None = None,
            run_timeout_s: float | None = None) -> ExecutionSummary:
    """Train every spec not yet recorded, on ``jobs`` workers of one profile.

    Args:
        specs: The runs of this stage (or shard); all on ``profile``.
        profile: Where they run; its knobs go to every worker.
        store: Results store; each record is saved as soon as it arrives.
        experiment_id: The experiment's row in the store.
        jobs: Worker processes (at most one per spec left to train).
        progress: Called with (spec, record) after each record is saved.
        log_dir: Folder for the workers' stderr logs (none: discarded).
        run_timeout_s: ``model.run_timeout_s``: a run not done by then is recorded as
            failed and its worker replaced (None: derived, see ``driftlab.runs.timeouts``).

    Returns:
        Counts: planned, skipped (already recorded), trained, failed; seconds; workers.

    Raises:
        KeyboardInterrupt: after saving every record received and stopping the workers.
        ProfileError: a worker found that this machine cannot honour the profile.
    """
    t0 = time.perf_counter()
    done = store.done_keys(s.key for s in specs)
    todo = [s for s in specs if s.key not in done]
    summary = ExecutionSummary(profile.name, len(specs), len(specs) - len(todo))
    if not todo:
        return summary
    jobs = max(1, min(jobs, len(todo)))
    summary.workers = jobs
    pool = _Pool(profile, todo, jobs, log_dir, RunTimeout(run_timeout_s, max(s.epochs for s in todo)))
    current: tuple[RunSpec, dict[str, Any]] | None = None
    try:
        while summary.trained + summary.failed < len(todo):
            try:
                item = pool.results.get(timeout=RESULT_POLL_S)
            except queue.Empty:
                if not any(t.is_alive() for t in pool.threads) and pool.results.empty():
                    raise RuntimeError(f"the workers of profile '{profile.name}' stopped with "
                                       f"{len(todo) - summary.trained - summary.failed} run(s) left") from None
                continue
            if isinstance(item, BaseException):
                raise item
            current = item
            _record(store, experiment_id, item, summary, progress)
            current = None
    except KeyboardInterrupt:
        _keep_finished(pool, store, experiment_id, current, summary)
        raise
    except BaseException:
        pool.shutdown(interrupted=True)
        raise
    else:
        pool.shutdown(interrupted=False)
    finally:
        summary.seconds = time.perf_counter() - t0
    return summary


def _record(store: Store, experiment_id: int, item: tuple[RunSpec, dict[str, Any]], summary: ExecutionSummary,
            progress: ProgressFn | None) -> None:
    spec, record = item
    store.save_runs(experiment_id, [item])
    if record.get("status") == "failed":
        summary.failed += 1
        summary.errors.append(str(record.get("error") or "unknown error"))  # grouped by first line: failures.group
    else:
        summary.trained += 1
    if progress is not None:
        progress(spec, record)


def _keep_finished(pool: _Pool, store: Store, experiment_id: int, current: tuple[RunSpec, dict[str, Any]] | None,
                   summary: ExecutionSummary) -> None:
    """After Ctrl-C: stop the workers, then save the run being saved and every run already received."""
    import signal

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None  # a 2nd Ctrl-C must not lose these
    try:
        pool.shutdown(interrupted=True)
        finished = [current] if current is not None else []
        while True:
            try:
                item = pool.results.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, BaseException):
                finished.append(item)
        for item in finished:  # save_runs is idempotent: a run saved twice is stored once
            _record(store, experiment_id, item, summary, None)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
