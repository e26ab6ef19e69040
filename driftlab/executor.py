"""Execute run specs in worker processes, one profile per worker, and record them.

Each worker imports TensorFlow once with its profile's knobs and trains many
runs. Specs are handed out one at a time (the next goes to whichever worker
is free), each record is written to the results store as soon as it arrives,
and keys already recorded are skipped, so an interrupted stage resumes where
it stopped and never trains a key twice.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from driftlab.config import ProfileConfig
from driftlab.profiles import PROFILE_ENV_KEYS, env_for
from driftlab.runspec import RunSpec
from driftlab.store import Store
from driftlab.worker import decode_record

WORKER_START_TIMEOUT_S = 300
MAX_WORKER_RESTARTS = 2


class WorkerDied(RuntimeError):
    pass


def worker_env(profile: ProfileConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROFILE_ENV_KEYS}
    env.update(env_for(profile))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Worker:
    """One ``python -m driftlab.worker`` process bound to a profile."""

    def __init__(self, profile: ProfileConfig, log_path: str | None = None):
        self.profile = profile
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "driftlab.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, env=worker_env(profile), text=True, bufsize=1)
        ready = self._read()
        self.fingerprint = ready["ready"]

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise WorkerDied(f"worker for profile '{self.profile.name}' exited with code {code}")
        return json.loads(line)

    def run(self, spec: RunSpec) -> dict[str, Any]:
        try:
            self.proc.stdin.write(json.dumps({"spec": spec.to_json()}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerDied(f"worker for profile '{self.profile.name}' is gone") from None
        return decode_record(self._read())

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        if self._log is not subprocess.DEVNULL:
            self._log.close()


@dataclass
class ExecutionSummary:
    profile: str
    planned: int
    skipped: int
    trained: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


ProgressFn = Callable[[RunSpec, dict[str, Any]], None]


def execute(specs: list[RunSpec], profile: ProfileConfig, store: Store, experiment_id: int, *,
            jobs: int = 1, progress: ProgressFn | None = None, log_dir: str | None = None,
            batch_size: int = 8) -> ExecutionSummary:
    """Train every spec not yet recorded, on ``jobs`` workers of one profile."""
    t0 = time.perf_counter()
    done = store.done_keys(s.key for s in specs)
    todo = [s for s in specs if s.key not in done]
    summary = ExecutionSummary(profile.name, len(specs), len(specs) - len(todo))
    if not todo:
        return summary
    work: queue.Queue[RunSpec | None] = queue.Queue()
    for spec in todo:
        work.put(spec)
    results: queue.Queue[tuple[RunSpec, dict[str, Any]] | BaseException] = queue.Queue()
    jobs = max(1, min(jobs, len(todo)))

    def serve(index: int) -> None:
        restarts, worker = 0, None
        log_path = os.path.join(log_dir, f"worker-{profile.name}-{index}.log") if log_dir else None
        try:
            while True:
                try:
                    spec = work.get_nowait()
                except queue.Empty:
                    return
                while True:
                    try:
                        if worker is None:
                            worker = Worker(profile, log_path)
                        results.put((spec, worker.run(spec)))
                        break
                    except WorkerDied as exc:
                        worker = None
                        restarts += 1
                        if restarts > MAX_WORKER_RESTARTS:
                            results.put((spec, {"key": spec.key, "status": "failed", "error": str(exc)}))
                            break
        except BaseException as exc:  # surface to the main thread
            results.put(exc)
        finally:
            if worker is not None:
                worker.close()

    threads = [threading.Thread(target=serve, args=(i,), daemon=True) for i in range(jobs)]
    for t in threads:
        t.start()
    pending: list[tuple[RunSpec, dict[str, Any]]] = []
    received = 0
    try:
        while received < len(todo):
            item = results.get()
            if isinstance(item, BaseException):
                raise item
            received += 1
            spec, record = item
            if record.get("status") == "failed":
                summary.failed += 1
                summary.errors.append(f"{spec.key}: {record.get('error')}")
            else:
                summary.trained += 1
            pending.append(item)
            # Write in small batches: few transactions, and at most a batch lost on a kill.
            if len(pending) >= batch_size or results.empty():
                store.save_runs(experiment_id, pending)
                pending = []
            if progress is not None:
                progress(spec, record)
    finally:
        if pending:
            store.save_runs(experiment_id, pending)
        for t in threads:
            t.join(timeout=1)
    summary.seconds = time.perf_counter() - t0
    return summary
