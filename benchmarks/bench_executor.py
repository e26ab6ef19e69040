"""Benchmark (not a test): the executor against a naive loop, on the quickstart model.

Measures, side by side in one invocation, on the same 24 runs of
``examples/quickstart.yaml`` (fixed tuned parameters, no tuning):

- ``naive``: one process, TensorFlow imported once, every run rebuilds and
  re-traces its model (the classic example's loop; ``DRIFTLAB_REUSE_MODELS=0``);
- ``executor, 1 worker, no reuse`` / ``1 worker`` / ``2 workers, no reuse`` /
  ``2 workers``: ``driftlab.runs.executor.execute`` with and without the reuse of
  traced models, to separate the two speed-ups;
- TensorFlow import and worker start-up time;
- per-run overhead (everything that is not ``fit``: spawn, import, build,
  predict, transport, storage) as a share of fit time;
- peak resident memory of the worker processes together (sampled) and each.

It also checks that every mode produced the same weight digests per run.
Usage: ``.venv/bin/python benchmarks/bench_executor.py [--runs 24] [--json out.json]``.
Figures depend on the machine being quiet: other processes on the cores
distort them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BEST_PARAMS = {"units": 32, "learning_rate": 0.003, "dropout": 0.1}

NAIVE_LOOP = r"""
import json, os, sys, time
t0 = time.perf_counter()
from driftlab.config.profiles import apply_env
from driftlab.config import ProfileConfig
apply_env(ProfileConfig(name="cpu-default"))
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
t_import = time.perf_counter() - t0
from driftlab.runs import training
from driftlab.runs.spec import RunSpec
specs = [RunSpec.from_json(s) for s in json.load(open(sys.argv[1]))]
out = []
for spec in specs:
    r = training.train(spec)
    out.append({"key": r["key"], "digest": r["weights_digest"], "fit_s": r["timings"]["fit_s"],
                "reused": r["timings"]["trace_reused"]})
print(json.dumps({"import_s": t_import, "wall_s": time.perf_counter() - t0, "runs": out}))
"""


def _specs(n_runs: int):
    from driftlab import stages
    from driftlab.config import load_config
    from driftlab.config.profiles import resolve_profiles
    from driftlab.config.seedplan import seed_points

    config = load_config(ROOT / "examples" / "quickstart.yaml")
    reference = resolve_profiles(config).reference
    points = seed_points(config.seeds)
    points = (points * (n_runs // len(points) + 1))[:n_runs] if n_runs > len(points) else points[:n_runs]
    return stages._run_specs(config, "bench", BEST_PARAMS, reference, points, "seeds"), reference


class MemorySampler(threading.Thread):
    """Samples the summed RSS of this process's ``driftlab.runs.worker`` children every 0.2 s."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_total_mb = 0.0
        self.peak_each_mb: dict[int, float] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        me = str(os.getpid())
        while not self._halt.is_set():
            total = 0.0
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    status = (entry / "status").read_text()
                    if f"\nPPid:\t{me}\n" not in status or b"driftlab.runs.worker" not in (entry / "cmdline").read_bytes():
                        continue
                except OSError:
                    continue
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                rss = float(fields.get("VmRSS", "0 kB").split()[0]) / 1024
                hwm = float(fields.get("VmHWM", "0 kB").split()[0]) / 1024
                total += rss
                self.peak_each_mb[int(entry.name)] = max(self.peak_each_mb.get(int(entry.name), 0.0), hwm)
            self.peak_total_mb = max(self.peak_total_mb, total)
            time.sleep(0.2)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def bench_naive(specs) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([s.to_json() for s in specs], f)
    env = {**os.environ, "DRIFTLAB_REUSE_MODELS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", NAIVE_LOOP, f.name], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=True).stdout
    wall = time.perf_counter() - t0
    os.unlink(f.name)
    result = json.loads(out.strip().splitlines()[-1])
    return {"wall_s": wall, "import_s": result["import_s"],
            "fit_s": sum(r["fit_s"] for r in result["runs"]),
            "digests": {r["key"]: r["digest"] for r in result["runs"]}, "reused": 0}


def bench_executor(specs, profile, jobs: int, reuse: bool) -> dict[str, Any]:
    from driftlab.runs.executor import execute
    from driftlab.storage.store import Store

    os.environ["DRIFTLAB_REUSE_MODELS"] = "auto" if reuse else "0"
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.sqlite")
        exp = store.experiment_id("quickstart")
        sampler = MemorySampler()
        sampler.start()
        t0 = time.perf_counter()
        summary = execute(specs, profile, store, exp, jobs=jobs)
        wall = time.perf_counter() - t0
        sampler.stop()
        runs = store.load_runs("quickstart", "bench", with_arrays=False)
    os.environ.pop("DRIFTLAB_REUSE_MODELS", None)
    assert summary.trained == len(specs), summary
    timings = [r["timings"] for r in runs]
    return {"wall_s": wall, "fit_s": sum(t["fit_s"] for t in timings),
            "build_s": sum(t["build_s"] for t in timings), "predict_s": sum(t["predict_s"] for t in timings),
            "run_total_s": sum(t["total_s"] for t in timings),
            "reused": sum(bool(t.get("trace_reused")) for t in timings),
            "digests": {r["key"]: r["weights_digest"] for r in runs},
            "peak_rss_total_mb": round(sampler.peak_total_mb), "peak_rss_each_mb": sorted(
                round(v) for v in sampler.peak_each_mb.values())}


def bench_startup(profile) -> dict[str, float]:
    from driftlab.runs.executor import Worker

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    worker = Worker(profile)
    ready_s = time.perf_counter() - t0
    worker.close()
    return {"python_import_tensorflow_s": import_s, "worker_spawn_to_ready_s": ready_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    specs, profile = _specs(args.runs)
    print(f"{len(specs)} quickstart runs, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[str, Any] = {"startup": bench_startup(profile)}
    print(f"startup: {results['startup']}", flush=True)
    modes = [("naive loop (1 process, rebuild + retrace each run)", lambda: bench_naive(specs)),
             ("executor, 1 worker, no reuse", lambda: bench_executor(specs, profile, 1, False)),
             ("executor, 1 worker", lambda: bench_executor(specs, profile, 1, True)),
             ("executor, 2 workers, no reuse", lambda: bench_executor(specs, profile, 2, False)),
             ("executor, 2 workers", lambda: bench_executor(specs, profile, 2, True))]
    naive_wall = None
    reference_digests = None
    for name, fn in modes:
        r = fn()
        digests = r.pop("digests")
        reference_digests = reference_digests or digests
        r["digests_equal_naive"] = digests == reference_digests
        r["runs_per_min"] = round(len(specs) / r["wall_s"] * 60, 1)
        naive_wall = naive_wall or r["wall_s"]
        r["speedup_vs_naive"] = round(naive_wall / r["wall_s"], 2)
        workers = 2 if "2 workers" in name else 1
        # Everything that is not fit, over fit: spawn + import + build + predict + transport + storage.
        r["overhead_share_of_fit"] = round((r["wall_s"] * workers - r["fit_s"]) / r["fit_s"], 3)
        results[name] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
