"""Benchmark (not a test): the tuning layer's cost per trial against plain Optuna, and real tuning throughput.

    .venv/bin/python benchmarks/bench_tune.py --pg URL [--trials 200] [--workers 1 4 8 16 32] [--json F]
    .venv/bin/python benchmarks/bench_tune.py --real [--real-trials 8] [--json F]

Storage mode, one run (about 5 minutes on 2 cores): at each worker count, plain Optuna (``study.optimize``, a no-op
objective, ``MaxTrialsCallback``) and driftlab (``tuning.run_worker``: slots, heartbeats,
stale-trial checks) on the same storage — PostgreSQL (``--pg``, a scratch database),
Optuna's gRPC storage proxy in front of it (plain Optuna's ``run_grpc_proxy_server``, and
``python -m driftlab.tuning.proxy``; 16 threads each), the journal file, and in-memory
(threads: it cannot be shared by processes). Worker processes are started once and reused.
Each worker times its objective calls: "ms per trial" is the median over workers of a
worker's time from its first to its last trial ÷ its trials in between; "trials/s" is
the study's. Then, one worker, per-trial cost (median gap between trials) in a study
holding 100 finished trials against one holding 10,000 (added in bulk), 100 trials each.
Random sampler throughout: TPE's own cost grows with the study, on any storage.

Real mode: trials per minute of the quickstart's Keras objective through the real
``stages.prepare`` + ``stages.tune`` path (each tuning worker trains in its own trial
process; each tune task is a process of its own, as kfp.local runs them), ``tuning.workers`` 1 vs 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from driftlab import settings  # noqa: E402
from driftlab.storage.db import normalize_url  # noqa: E402

STORAGES = ("postgresql", "grpc-proxy", "journal", "memory")
PROXY_THREADS = 16
SCALING_SIZES = (100, 10_000)
ENV_KEYS = (settings.DB_URL.name, settings.STUDY_GRPC.name, settings.HOME.name)
CONFIG = """\
name: bench
dataset: {{name: digits}}
search_space: {{x: {{type: float, low: -1.0, high: 1.0}}}}
tuning: {{trials: {trials}, workers: {workers}, sampler: random}}
profiles: {{reference: cpu-default, pools: [{{name: cpu-default}}]}}
"""


# -- what a worker runs ---------------------------------------------------------------------------------------------
def _timed_objective(times: list[float]):
    def objective(trial: optuna.Trial) -> float:
        times.append(time.time())
        return trial.suggest_float("x", -1.0, 1.0) ** 2

    return objective


def _plain_storage(spec: dict[str, Any]) -> Any:
    if spec["kind"] == "rdb":
        return spec["url"]  # optuna.load_study wraps it in Optuna's cache, as Optuna users get it
    if spec["kind"] == "grpc":
        return optuna.storages.GrpcStorageProxy(host=spec["host"], port=spec["port"])
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(spec["path"]))


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One worker's share of a measurement: its objective call times."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    times: list[float] = []
    try:
        if job["flavor"] == "optuna":
            study = optuna.load_study(study_name=job["study"], storage=_plain_storage(job["storage"]),
                                      sampler=optuna.samplers.RandomSampler())
            stop = optuna.study.MaxTrialsCallback(job["target"], states=(TrialState.COMPLETE,))
            study.optimize(_timed_objective(times), callbacks=[stop])
        else:
            from driftlab import tuning
            from driftlab.config import load_config_text

            for key in ENV_KEYS:
                os.environ.pop(key, None)
            os.environ.update(job["env"])
            config = load_config_text(job["config"], "bench")
            tuning.run_worker(config, job["campaign"], job["worker"], _timed_objective(times))
        return {"times": times}
    except Exception as exc:  # reported in the table: a storage that breaks under load is a result
        return {"times": times, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}


def _serve(conn: Any) -> None:
    import warnings

    warnings.simplefilter("ignore")
    import driftlab.tuning  # noqa: F401  (import once, before the first job)

    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(run_job(job))
        import gc

        gc.collect()  # drop the job's storage and its database connections


class Pool:
    """Worker processes started once (spawned, driftlab and Optuna imported) and reused by every measurement."""

    def __init__(self, size: int) -> None:
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(size):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child,), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            assert conn.recv() == "ready"

    def run(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for conn, job in zip(self.conns, jobs):
            conn.send(job)
        return [conn.recv() for conn in self.conns[:len(jobs)]]

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for proc in self.procs:
            proc.join(timeout=30)


def summarize(results: list[dict[str, Any]], counted: int) -> dict[str, Any]:
    per_worker = [1000 * (r["times"][-1] - r["times"][0]) / (len(r["times"]) - 1)
                  for r in results if len(r["times"]) > 1]
    starts = [r["times"][0] for r in results if r["times"]]
    ends = [r["times"][-1] for r in results if r["times"]]
    span = max(ends) - min(starts) if starts else 0.0
    gaps = [1000 * (b - a) for r in results for a, b in zip(r["times"], r["times"][1:])]
    return {"trials": counted, "errors": sorted({r["error"] for r in results if r.get("error")}),
            "ms_per_trial": round(statistics.median(per_worker), 2) if per_worker else None,
            "median_gap_ms": round(statistics.median(gaps), 2) if gaps else None,
            "trials_per_s": round((sum(len(r["times"]) for r in results) - 1) / span, 1) if span > 0 else None}


# -- where the study lives ------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def proxies(url: str, log_dir: Path):
    """Plain Optuna's proxy and driftlab's, in front of ``url``: {"optuna": (host, port), "driftlab": ...}."""
    plain_port, ours_port = _free_port(), _free_port()
    plain = ("import optuna, concurrent.futures as f; optuna.storages.run_grpc_proxy_server("
             f"optuna.storages.get_storage({url!r}), host='127.0.0.1', port={plain_port}, "
             f"thread_pool=f.ThreadPoolExecutor({PROXY_THREADS}))")
    env = {**os.environ, settings.DB_URL.name: url}
    procs = {"optuna": subprocess.Popen([sys.executable, "-c", plain], env=env, stdout=subprocess.DEVNULL,
                                        stderr=open(log_dir / "proxy-optuna.log", "w"))}
    addresses = {"optuna": ("127.0.0.1", plain_port)}
    if importlib.util.find_spec("driftlab.tuning.proxy"):
        procs["driftlab"] = subprocess.Popen(
            [sys.executable, "-m", "driftlab.tuning.proxy", "--host", "127.0.0.1", "--port", str(ours_port),
             "--threads", str(PROXY_THREADS)], env=env, stdout=subprocess.DEVNULL,
            stderr=open(log_dir / "proxy-driftlab.log", "w"))
        addresses["driftlab"] = ("127.0.0.1", ours_port)
    try:
        for host, port in addresses.values():
            optuna.storages.GrpcStorageProxy(host=host, port=port).wait_server_ready(timeout=60)
        yield addresses
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)


@contextlib.contextmanager
def environment(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    for key in ENV_KEYS:
        os.environ.pop(key, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


class Bench:
    def __init__(self, pg: str, tmp: Path) -> None:
        self.pg, self.tmp = normalize_url(pg) if pg else "", tmp
        self.proxy: dict[str, tuple[str, int]] = {}

    def _where(self, flavor: str, storage: str, tag: str) -> tuple[dict[str, Any], dict[str, str]]:
        """(plain Optuna's storage spec, driftlab's environment) for one measurement."""
        if storage == "postgresql":
            return {"kind": "rdb", "url": self.pg}, {settings.DB_URL.name: self.pg}
        if storage == "grpc-proxy":
            host, port = self.proxy[flavor]
            return {"kind": "grpc", "host": host, "port": port}, {settings.STUDY_GRPC.name: f"{host}:{port}"}
        home = self.tmp / tag
        home.mkdir(parents=True, exist_ok=True)
        return {"kind": "journal", "path": str(home / "optuna-journal.log")}, {settings.HOME.name: str(home)}

    def supported(self, flavor: str, storage: str) -> bool:
        return storage != "grpc-proxy" or flavor in self.proxy

    def measure(self, pool: Pool | None, flavor: str, storage: str, workers: int, trials: int,
                prefill: int = 0) -> dict[str, Any]:
        tag = f"{flavor}-{storage}-{workers}-{uuid.uuid4().hex[:6]}"
        row = {"flavor": flavor, "storage": storage, "workers": workers, "budget": trials, "prefill": prefill}
        if storage == "memory":
            return {**row, **self._memory(flavor, workers, trials)}
        spec, env = self._where(flavor, storage, tag)
        with environment(env):
            if flavor == "optuna":
                study = optuna.create_study(study_name=tag, storage=_plain_storage(spec))
                self._prefill(study, storage, spec, prefill)
                jobs = [{"flavor": "optuna", "storage": spec, "study": tag, "target": prefill + trials}] * workers
            else:
                from driftlab import tuning
                from driftlab.config import load_config_text

                text = CONFIG.format(trials=prefill + trials, workers=workers)
                config = load_config_text(text, "bench")
                if prefill:
                    study = optuna.create_study(study_name=tuning.study_name(config, tag), direction=config.direction,
                                                storage=tuning.storage_for(config))
                    self._prefill(study, storage, spec, prefill)
                tuning.create_study(config, tag)
                jobs = [{"flavor": "driftlab", "env": env, "config": text, "campaign": tag, "worker": i}
                        for i in range(workers)]
            results = pool.run(jobs)
            done = optuna.load_study(study_name=tag if flavor == "optuna" else tuning.study_name(config, tag),
                                     storage=_plain_storage(spec) if flavor == "optuna" else tuning.storage_for(config))
            counted = sum(t.state == TrialState.COMPLETE for t in done.get_trials(deepcopy=False)) - prefill
        return {**row, **summarize(results, counted)}

    def _prefill(self, study: optuna.Study, storage: str, spec: dict[str, Any], n: int) -> None:
        """``n`` finished trials: one SQL statement per table on PostgreSQL, ``add_trials`` on a journal."""
        if not n:
            return
        if storage == "journal":
            dist = optuna.distributions.FloatDistribution(-1.0, 1.0)
            study.add_trials([optuna.trial.create_trial(params={"x": i / n}, distributions={"x": dist}, value=i / n)
                              for i in range(n)])
            return
        import psycopg2

        sid = study._study_id
        dist = json.dumps({"name": "FloatDistribution",
                           "attributes": {"step": None, "low": -1.0, "high": 1.0, "log": False}})
        with psycopg2.connect(self.pg.replace("postgresql+psycopg2://", "postgresql://", 1)) as conn, \
                conn.cursor() as cur:
            cur.execute("INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete) "
                        "SELECT g, %s, 'COMPLETE', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC' "
                        "FROM generate_series(0, %s - 1) g", (sid, n))
            cur.execute("INSERT INTO trial_values (trial_id, objective, value, value_type) "
                        "SELECT trial_id, 0, random(), 'FINITE' FROM trials WHERE study_id = %s", (sid,))
            cur.execute("INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) "
                        "SELECT trial_id, 'x', random() * 2 - 1, %s FROM trials WHERE study_id = %s", (dist, sid))

    def _memory(self, flavor: str, workers: int, trials: int) -> dict[str, Any]:
        times: dict[int, list[float]] = {i: [] for i in range(workers)}
        if flavor == "optuna":
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler())
            stop = optuna.study.MaxTrialsCallback(trials, states=(TrialState.COMPLETE,))
            threads = [threading.Thread(target=study.optimize, args=(_timed_objective(times[i]),),
                                        kwargs={"callbacks": [stop]}) for i in range(workers)]
        else:
            from driftlab.tuning import budget
            from driftlab.tuning.claim import SlotClaimer, SlotStudy, worker_attrs
            from driftlab.tuning.storage import NoFreeSlot
            from driftlab.tuning.study import run_slots

            class SlotInMemoryStorage(optuna.storages.InMemoryStorage):
                def create_new_trial(self, study_id: int, template_trial=None) -> int:
                    if template_trial is None:
                        raise NoFreeSlot("budget met")
                    return super().create_new_trial(study_id, template_trial)

            storage = SlotInMemoryStorage()
            study = optuna.create_study(storage=storage, study_name="memory")
            budget.top_up(study, trials)

            def work(i: int) -> None:
                mine = SlotStudy(study_name="memory", storage=storage, claimer=SlotClaimer(i, workers, worker_attrs(i)),
                                 sampler=optuna.samplers.RandomSampler())
                run_slots(mine, _timed_objective(times[i]), trials, max_trials=None, poll_seconds=1.0)

            threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        counted = sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
        return summarize([{"times": v} for v in times.values()], counted)


# -- reports --------------------------------------------------------------------------------------------------------
def storage_tables(rows: list[dict[str, Any]], workers: list[int]) -> list[str]:
    get = {(r["flavor"], r["storage"], r["workers"]): r for r in rows if not r["prefill"]}
    head = "| storage | " + " | ".join(f"{w} w: ms/trial · trials/s" for w in workers) + " |"
    lines = [head, "|---|" + "---|" * len(workers)]
    for storage in STORAGES:
        for flavor in ("optuna", "driftlab"):
            cells = []
            for w in workers:
                r = get.get((flavor, storage, w))
                if r is None:
                    cells.append("—")
                elif r["errors"] or r["ms_per_trial"] is None:
                    cells.append("error: " + "; ".join(r["errors"])[:80])
                else:
                    cells.append(f"{r['ms_per_trial']:g} · {r['trials_per_s']:g}")
            if any(c != "—" for c in cells):
                lines.append(f"| {flavor}, {storage} | " + " | ".join(cells) + " |")
    lines += ["", "| storage | " + " | ".join(f"{w} w" for w in workers) + " | driftlab ÷ Optuna ≤ 1.3 everywhere |",
              "|---|" + "---|" * (len(workers) + 1)]
    for storage in STORAGES:
        ratios = []
        for w in workers:
            a, b = get.get(("driftlab", storage, w)), get.get(("optuna", storage, w))
            ok = a and b and a["ms_per_trial"] and b["ms_per_trial"]
            ratios.append(round(a["ms_per_trial"] / b["ms_per_trial"], 2) if ok else None)
        if any(r is not None for r in ratios):
            met = all(r is not None and r <= 1.3 for r in ratios)
            lines.append(f"| {storage} | " + " | ".join("—" if r is None else f"{r:g}" for r in ratios)
                         + f" | {'met' if met else 'not met'} |")
    return lines


def scaling_table(rows: list[dict[str, Any]]) -> list[str]:
    get = {(r["flavor"], r["storage"], r["prefill"]): r for r in rows if r["prefill"]}
    small, large = SCALING_SIZES
    lines = [f"| storage | ms per trial at {small:,} trials | at {large:,} | ratio (target ≤ 1.5) |", "|---|---|---|---|"]
    for storage in STORAGES:
        for flavor in ("optuna", "driftlab"):
            a, b = get.get((flavor, storage, small)), get.get((flavor, storage, large))
            if a and b and a["median_gap_ms"] and b["median_gap_ms"]:
                lines.append(f"| {flavor}, {storage} | {a['median_gap_ms']:g} | {b['median_gap_ms']:g} | "
                             f"{b['median_gap_ms'] / a['median_gap_ms']:.2f} |")
    return lines


# -- real tuning ----------------------------------------------------------------------------------------------------
REAL_TASK = "import sys\nfrom driftlab import stages\nstages.tune(sys.stdin.read(), 'realtune', int(sys.argv[1]))\n"


def real_one(workers: int, trials: int) -> dict[str, Any]:
    """One tune of the quickstart with ``tuning.workers`` = ``workers``, in this process (a fresh one)."""
    import yaml

    from driftlab import stages, tuning
    from driftlab.config import load_config_text

    spec = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    spec["tuning"].update(trials=trials, workers=workers)
    text = yaml.safe_dump(spec, sort_keys=False)
    home = Path(tempfile.mkdtemp(prefix="driftlab-realtune-"))
    with environment({settings.HOME.name: str(home)}):
        t0, started = time.perf_counter(), time.time()
        plan = stages.prepare(text, "realtune")
        prepared = time.perf_counter() - t0
        # Each tune task in its own process, as kfp.local (and a cluster) runs them: two tasks as threads of one
        # process would share its GIL, and each trial waits on its task's answer after every epoch.
        tasks = [subprocess.Popen([sys.executable, "-c", REAL_TASK, str(t)], stdin=subprocess.PIPE, cwd=ROOT,
                                  text=True) for t in plan["workers"]]
        for task in tasks:
            task.stdin.write(text)
            task.stdin.close()
        assert all(task.wait() == 0 for task in tasks), "a tune task failed"
        wall = time.perf_counter() - t0
        trials_done = tuning.load_study(load_config_text(text, "bench"), "realtune").get_trials(deepcopy=False)
    finished = [t for t in trials_done if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    seconds = [(t.datetime_complete - t.datetime_start).total_seconds() for t in finished]
    first = min(t.datetime_start for t in finished)
    span = (max(t.datetime_complete for t in finished) - first).total_seconds()
    return {"workers": workers, "trials": len(finished), "tasks": len(plan["workers"]), "wall_s": round(wall, 1),
            "prepare_s": round(prepared, 1), "first_trial_after_s": round(first.timestamp() - started, 1),
            "trial_s_median": round(statistics.median(seconds), 2),
            "trials_per_min": round(60 * len(finished) / wall, 2),
            "trials_per_min_first_to_last": round(60 * len(finished) / span, 2)}


def _real_processes(workers: int, trials: int, copies: int) -> list[dict[str, Any]]:
    cmd = [sys.executable, __file__, "--real-one", str(workers), "--real-trials", str(trials)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    outs = [p.communicate()[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "a tune failed"
    return [json.loads(out.strip().splitlines()[-1]) for out in outs]


def real(trials: int, repeats: int) -> list[dict[str, Any]]:
    """``repeats`` rounds of: 1 worker, 2 workers, and (this machine's ceiling) two separate 1-worker tunes at once.

    Each tune runs in a fresh process; one row per tune ("pair": the ceiling's two rows).
    """
    rows = []
    for repeat in range(repeats):
        for workers in (1, 2):
            rows.append({**_real_processes(workers, trials, 1)[0], "repeat": repeat})
            print(json.dumps(rows[-1]), flush=True)
        for row in _real_processes(1, trials, 2):
            rows.append({**row, "repeat": repeat, "pair": True})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def real_table(rows: list[dict[str, Any]]) -> list[str]:
    single = [r for r in rows if not r.get("pair")]

    def med(workers: int, key: str) -> float:
        return statistics.median(r[key] for r in single if r["workers"] == workers)

    def span(workers: int, key: str) -> str:
        values = [r[key] for r in single if r["workers"] == workers]
        return f"{statistics.median(values):g} ({min(values):g}–{max(values):g})"

    lines = ["| tuning.workers | trials | wall s (prepare + tune) | first trial starts after s | trials/min | "
             "trials/min, first trial start to last end | trial s (median) |", "|---|---|---|---|---|---|---|"]
    for w in (1, 2):
        lines.append(f"| {w} | {rows[0]['trials']} | {span(w, 'wall_s')} | {span(w, 'first_trial_after_s')} | "
                     f"{span(w, 'trials_per_min')} | {span(w, 'trials_per_min_first_to_last')} | "
                     f"{med(w, 'trial_s_median'):g} |")
    speedup = med(2, "trials_per_min") / med(1, "trials_per_min")
    steady = med(2, "trials_per_min_first_to_last") / med(1, "trials_per_min_first_to_last")
    repeats = len(single) // 2
    pairs: dict[int, float] = {}
    for r in rows:
        if r.get("pair"):
            pairs[r["repeat"]] = pairs.get(r["repeat"], 0.0) + r["trials_per_min"]
    ceiling = statistics.median(pairs.values()) / med(1, "trials_per_min") if pairs else float("nan")
    return lines + ["", f"2 workers ÷ 1 (median of {repeats} run(s) each): {speedup:.2f}× on the whole tune, "
                        f"{steady:.2f}× from the first trial's start to the last trial's end (target ≥ 1.7 on 2 cores). "
                        f"This machine's ceiling, two separate 1-worker tunes at once (trials/min summed): "
                        f"{ceiling:.2f}×."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="", help="PostgreSQL URL (a scratch database)")
    parser.add_argument("--trials", type=int, default=200, help="trials per measurement on PostgreSQL and the proxy")
    parser.add_argument("--fast-trials", type=int, default=1000, help="trials per measurement on the journal and "
                        "in memory (200 would take well under a second there)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--storages", nargs="+", default=list(STORAGES), choices=STORAGES)
    parser.add_argument("--no-scaling", action="store_true", help="skip the 100 vs 10,000 trials measurement")
    parser.add_argument("--scaling-trials", type=int, default=100)
    parser.add_argument("--real", action="store_true", help="real Keras tuning throughput instead")
    parser.add_argument("--real-trials", type=int, default=16)
    parser.add_argument("--real-repeats", type=int, default=3)
    parser.add_argument("--real-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.real_one:
        print(json.dumps(real_one(args.real_one, args.real_trials)))
        return
    if args.real:
        rows = real(args.real_trials, args.real_repeats)
        print("\n".join(["", *real_table(rows)]))
        if args.json:
            Path(args.json).write_text(json.dumps({"real": rows}, indent=1))
        return

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings

    warnings.simplefilter("ignore")
    storages = [s for s in args.storages if args.pg or s in ("journal", "memory")]
    tmp = Path(tempfile.mkdtemp(prefix="driftlab-bench-"))
    bench = Bench(args.pg, tmp)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    pool = Pool(max(args.workers))
    try:
        with proxies(bench.pg, tmp) if "grpc-proxy" in storages else contextlib.nullcontext({}) as addresses:
            bench.proxy = addresses
            for storage in storages:
                for workers in args.workers:
                    for flavor in ("optuna", "driftlab"):
                        if bench.supported(flavor, storage):
                            trials = args.fast_trials if storage in ("journal", "memory") else args.trials
                            rows.append(bench.measure(pool, flavor, storage, workers, trials))
                            print(json.dumps(rows[-1]), flush=True)
            if not args.no_scaling:
                for storage in (s for s in storages if s != "memory"):
                    for flavor in ("optuna", "driftlab"):
                        for size in SCALING_SIZES:
                            if bench.supported(flavor, storage):
                                rows.append(bench.measure(pool, flavor, storage, 1, args.scaling_trials, size))
                                print(json.dumps(rows[-1]), flush=True)
    finally:
        pool.close()
    seconds = round(time.perf_counter() - started)
    print("\n".join(["", f"{args.trials} trials per measurement ({args.fast_trials} on the journal and in memory), "
                     f"{seconds} s in all", "",
                     *storage_tables(rows, args.workers), "", *scaling_table(rows)]))
    if args.json:
        Path(args.json).write_text(json.dumps({"storage": rows, "trials": args.trials, "fast_trials": args.fast_trials,
                                               "seconds": seconds,
                                               "workers": args.workers}, indent=1))


if __name__ == "__main__":
    main()
