"""Benchmark (not a test): storage overhead per trial, trivial objective.

``.venv/bin/python benchmarks/bench_tune.py [--trials 200] [--workers 1 4] [--pg URL]``
runs the slot-budget worker loop (the one ``run_worker`` uses: pop a slot,
heartbeat where the storage has one, tell) with an objective that does
nothing, on in-memory storage (threads: it cannot be shared by processes),
Optuna's journal file, SQLite and PostgreSQL (processes). It prints the
median milliseconds per trial seen by a worker (its wall time / its trials),
and the study's throughput.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import optuna

from driftlab.storage.db import engine_kwargs, normalize_url
from driftlab.tuning import budget as slots
from driftlab.tuning.storage import NoFreeSlot, ResilientRDBStorage, SlotJournalStorage

HEARTBEAT_S = 5


class SlotInMemoryStorage(optuna.storages.InMemoryStorage):
    def create_new_trial(self, study_id: int, template_trial=None) -> int:
        if template_trial is None:
            raise NoFreeSlot("budget met")
        return super().create_new_trial(study_id, template_trial)


def make_storage(kind: str, where: str) -> optuna.storages.BaseStorage:
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        return SlotJournalStorage(JournalFileBackend(where))
    where = normalize_url(where)
    return ResilientRDBStorage(where, engine_kwargs=engine_kwargs(where), heartbeat_interval=HEARTBEAT_S,
                               grace_period=3 * HEARTBEAT_S)


def _noop(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", -1.0, 1.0) ** 2


def worker_loop(storage: optuna.storages.BaseStorage, name: str) -> tuple[int, float]:
    """Run slots until none is left; returns (trials, seconds)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler())
    ran, t0 = 0, time.perf_counter()
    while True:
        try:
            study.optimize(_noop, n_trials=1, callbacks=[slots.replace_failed])
            ran += 1
        except NoFreeSlot:
            return ran, time.perf_counter() - t0


def _process_worker(kind: str, where: str, name: str, start: Any, out: Any) -> None:
    try:
        storage = make_storage(kind, where)
        optuna.load_study(study_name=name, storage=storage)  # connect before the start line
        start.wait()
        out.put(worker_loop(storage, name))
    except Exception as exc:  # reported in the table: a storage that breaks under load is a result
        out.put((0, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"))


def measure(kind: str, where: str, trials: int, workers: int) -> dict[str, Any]:
    name = f"bench-{kind}-{workers}-{time.time_ns()}"
    storage = SlotInMemoryStorage() if kind == "memory" else make_storage(kind, where)
    study = optuna.create_study(storage=storage, study_name=name)
    study.set_user_attr("budget", trials)
    slots.top_up(study, trials)
    results: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    if kind == "memory":
        threads = [threading.Thread(target=lambda: results.append(worker_loop(storage, name)))
                   for _ in range(workers)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        ctx = mp.get_context("spawn")
        start, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_process_worker, args=(kind, where, name, start, out)) for _ in range(workers)]
        for p in procs:
            p.start()
        time.sleep(3 + workers)  # let them import and connect
        t0 = time.perf_counter()
        start.set()
        results = [out.get(timeout=300) for _ in procs]
        for p in procs:
            p.join()
    wall = time.perf_counter() - t0
    done = slots.counts(study)
    per_trial = [1000 * s / n for n, s in results if n]
    errors = sorted({s for n, s in results if isinstance(s, str)})
    return {"storage": kind, "workers": workers, "trials": done.counted, "worker_errors": errors,
            "median_ms_per_trial": round(statistics.median(per_trial), 2) if per_trial else None,
            "study_trials_per_s": round(done.counted / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--pg", default="", help="PostgreSQL URL (a scratch database)")
    parser.add_argument("--storages", nargs="+", default=["memory", "journal", "sqlite", "postgresql"])
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="driftlab-bench-"))
    where = {"memory": "", "journal": str(tmp / "journal.log"), "sqlite": f"sqlite:///{tmp / 'optuna.db'}",
             "postgresql": args.pg}
    rows = []
    for kind in args.storages:
        if kind == "postgresql" and not args.pg:
            continue
        if kind == "sqlite":
            import sqlite3

            sqlite3.connect(tmp / "optuna.db").execute("PRAGMA journal_mode=WAL").close()
        for w in args.workers:
            rows.append(measure(kind, where[kind], args.trials, w))
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
