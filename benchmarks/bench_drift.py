"""Benchmark (not a test): aggregation time and peak memory vs record count, and HTML time.

    .venv/bin/python benchmarks/bench_drift.py            # 10,000 and 50,000 records x 1,000 eval rows
    .venv/bin/python benchmarks/bench_drift.py --paths store --sizes 50000
    .venv/bin/python benchmarks/bench_drift.py --html /tmp/dlhome/reports/...  # HTML from a report.json

Two paths per size, each size in a fresh process so that peak RSS belongs to that size alone:

- ``memory``: ``analyze`` on records already in memory (arrays included);
- ``store``: the aggregate stage itself (``driftlab.stages.aggregate``: read the campaign from a
  results database written by driftlab's Store, analyse it, write the reports). The SQLite
  database is built once per size in a separate process under ``--db-dir`` and reused. The stage
  measures the runs' arrays in helper processes (``driftlab.drift.helpers``): CPU seconds add
  theirs, and peak MiB adds each helper's peak to the stage's (an upper bound of the whole).

Targets (issue 15): 50,000 records x 1,000 predictions in <= 10 s and <= 1 GiB peak RSS on
2 cores, time linear in the number of records. Each row is printed as Markdown too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (10_000, 50_000)
PATHS = ("memory", "store")
SEEDS_PER_INIT = 10 * 5  # shuffle x split seeds of the synthetic plan below
PROFILES = ("ref", "b", "c")
CAMPAIGN = "bench"
DB_DIR = Path(tempfile.gettempdir()) / "driftlab-bench-drift"
SAVE_CHUNK = 1000  # records per Store.save_runs transaction while building a database
STORE_FORMAT = "scan-index"  # in the database's name: one built by an older Store is not reused


def plan_for(n_records: int):
    """Reference: init x 10 shuffle x 5 split x 2 repeats x det on/off; two more profiles repeat det-on runs."""
    from support.synthetic import SyntheticPlan

    n_init = max(1, round(n_records / (SEEDS_PER_INIT * 2 * 2 + 2 * SEEDS_PER_INIT * 2)))
    return SyntheticPlan(init=tuple(range(n_init)), shuffle=tuple(range(10)), split=tuple(range(5)), repeats=2,
                         profiles=PROFILES, n_eval=1000, n_classes=10,
                         sigmas={"init": 0.02, "shuffle": 0.01, "hardware": 0.005, "nondeterminism": 0.01})


def config_text(n_records: int) -> str:
    """The experiment the stage reads (JSON is YAML): the synthetic plan's seeds and profiles."""
    plan = plan_for(n_records)
    return json.dumps({"name": "bench", "dataset": {"name": "digits"},
                       "profiles": {"reference": "ref", "pools": [{"name": p} for p in PROFILES]},
                       "seeds": {"init": list(plan.init), "shuffle": list(plan.shuffle), "split": list(plan.split),
                                 "repeats": plan.repeats, "deterministic": list(plan.deterministic),
                                 "max_runs": 1_000_000}})


def one(n_records: int) -> dict:
    from driftlab.config import ExperimentConfig
    from driftlab.drift import analyze
    from support.synthetic import generate

    records = generate(plan_for(n_records))
    cfg = ExperimentConfig.model_validate({"name": "bench", "dataset": {"name": "digits"},
                                           "profiles": {"auto": True}})
    analyze(records[:50], cfg, reference="ref")  # imports and first-call costs out of the timing
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    analyze(records, cfg, reference="ref")
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"records": len(records), "eval_rows": 1000, "seconds": round(seconds, 2), "cpu_s": round(cpu, 2),
            "peak_mib": round(peak)}


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """User + system CPU time of this process (all threads), or of its finished children (the aggregate stage's
    helper processes): less sensitive than wall time to a shared machine."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class _Spec:
    """What Store.save_runs reads of a run spec, for a synthetic record."""

    stage = "retrain"
    campaign = CAMPAIGN

    def __init__(self, record: dict, plan: str):
        self.key, self.profile_name, self.plan = record["key"], record["profile"], plan
        for name in ("init_seed", "shuffle_seed", "split_seed", "repeat", "deterministic"):
            setattr(self, name, record[name])

    def to_json(self) -> dict:
        return {"key": self.key}


def build_db(n_records: int, path: Path) -> dict:
    """Write the synthetic campaign into a fresh SQLite results database with driftlab's Store."""
    from driftlab.config import load_config_text, plan_hash
    from driftlab.storage.store import Store
    from support.synthetic import generate

    plan = plan_hash(load_config_text(config_text(n_records), "experiment"))
    records = generate(plan_for(n_records))
    store = Store(f"sqlite:///{path}")
    exp = store.experiment_id("bench")
    t0 = time.perf_counter()
    for start in range(0, len(records), SAVE_CHUNK):
        store.save_runs(exp, [(_Spec(r, plan), r) for r in records[start:start + SAVE_CHUNK]])
    return {"records": len(records), "write_seconds": round(time.perf_counter() - t0, 1),
            "db_mib": round(path.stat().st_size / 2 ** 20)}


def store_one(n_records: int, path: Path) -> dict:
    """Time the aggregate stage on the database at ``path`` (fresh process: its peak RSS is the stage's)."""
    from driftlab import settings, stages
    import driftlab.drift  # noqa: F401  imports out of the timing, as in ``one``
    import driftlab.report  # noqa: F401
    import scipy.stats  # noqa: F401

    os.environ[settings.DB_URL.name] = f"sqlite:///{path}"
    from driftlab.drift.helpers import helper_count

    with tempfile.TemporaryDirectory() as out:
        t0, cpu0, children0 = time.perf_counter(), cpu_seconds(), cpu_seconds(resource.RUSAGE_CHILDREN)
        res = stages.aggregate(config_text(n_records), CAMPAIGN, out)
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        helpers_cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - children0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    helper_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if helpers_cpu else 0.0
    helpers = helper_count() if helpers_cpu else 0
    # Peak of the whole: the stage's own peak plus each helper's (an upper bound: they share no page here,
    # and did not all peak at the stage's own peak).
    return {"records": n_records, "eval_rows": 1000, "seconds": round(seconds, 2),
            "cpu_s": round(cpu + helpers_cpu, 2), "helpers": helpers, "helper_peak_mib": round(helper_peak),
            "peak_mib": round(peak + helpers * helper_peak), "stage_peak_mib": round(peak), "gate": res["gate"]}


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def database(n_records: int, db_dir: Path) -> Path:
    """The size's database, built (in a child process) unless a complete one is there."""
    db_dir.mkdir(parents=True, exist_ok=True)
    path = db_dir / f"records-{n_records}-{STORE_FORMAT}.sqlite"
    done = path.with_suffix(".done")
    if not (path.exists() and done.exists()):
        for stale in db_dir.glob(f"{path.name}*"):
            stale.unlink()
        info = _child("--build", str(n_records), str(path))
        done.write_text(json.dumps(info))
        print(f"built {path}: {info}", file=sys.stderr, flush=True)
    return path


def measure(path_kind: str, sizes: list[int], repeats: int, db_dir: Path) -> list[dict]:
    rows = []
    for n in sizes:
        runs = []
        load_before = os.getloadavg()[0]
        for _ in range(repeats):
            if path_kind == "store":
                runs.append(_child("--store-one", str(n), str(database(n, db_dir))))
            else:
                runs.append(_child("--one", str(n)))
            print(json.dumps({"path": path_kind, **runs[-1]}), flush=True)
        secs = sorted(r["seconds"] for r in runs)
        cpu = sorted(r["cpu_s"] for r in runs)
        row = {"records": runs[0]["records"], "seconds_median": secs[len(secs) // 2],
               "seconds_min": secs[0], "seconds_max": secs[-1], "cpu_s_median": cpu[len(cpu) // 2],
               "peak_mib": max(r["peak_mib"] for r in runs), "helpers": runs[0].get("helpers", 0),
               "load_before": load_before}
        print(f"| {path_kind} | {row['records']} | {row['seconds_median']:.2f} ({row['seconds_min']:.2f}–"
              f"{row['seconds_max']:.2f}) | {row['cpu_s_median']:.2f} | {row['peak_mib']} | {row['helpers']} | "
              f"{load_before:.1f} |", flush=True)
        rows.append(row)
    return rows


def html(report_json: str) -> dict:
    from driftlab.report import to_html

    result = json.loads(open(report_json, encoding="utf-8").read())
    t0 = time.perf_counter()
    page = to_html(result)
    return {"html_seconds": round(time.perf_counter() - t0, 4), "bytes": len(page)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--build", nargs=2, metavar=("N", "DB"), help=argparse.SUPPRESS)
    parser.add_argument("--store-one", nargs=2, metavar=("N", "DB"), help=argparse.SUPPRESS)
    parser.add_argument("--html", help="time the HTML report of this report.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="record counts")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS),
                        help="records in memory, and/or the aggregate stage reading a results database")
    parser.add_argument("--db-dir", type=Path, default=DB_DIR, help="where the store path's databases are kept")
    parser.add_argument("--repeats", type=int, default=1, help="runs per size (median, min, max)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if args.one or args.build or args.store_one:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # support.synthetic
        if args.one:
            print(json.dumps(one(args.one)))
        elif args.build:
            print(json.dumps(build_db(int(args.build[0]), Path(args.build[1]))))
        else:
            print(json.dumps(store_one(int(args.store_one[0]), Path(args.store_one[1]))))
        return
    if args.html:
        print(json.dumps(html(args.html)))
        return
    print("| path | records | seconds | CPU seconds (with helpers) | peak MiB (stage + each helper's peak) | "
          "helper processes | load average before |\n|---|---|---|---|---|---|---|", flush=True)
    summary: dict = {}
    for kind in args.paths:
        rows = measure(kind, args.sizes, args.repeats, args.db_dir)
        key = "sizes" if kind == "memory" else "store"  # "sizes": the in-memory rows, as run_all.py reads them
        summary[key] = rows
        summary[f"{key}_time_exponent" if kind == "store" else "time_exponent"] = scaling_exponent(
            rows, "seconds_median")
        summary[f"{key}_memory_exponent" if kind == "store" else "memory_exponent"] = scaling_exponent(
            rows, "peak_mib")
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)


def scaling_exponent(rows: list[dict], key: str) -> float | None:
    """Least-squares slope of log(value) on log(records): 1.0 is linear growth."""
    import numpy as np

    if len(rows) < 2:
        return None
    x = np.log([r["records"] for r in rows])
    y = np.log([max(r[key], 1e-9) for r in rows])
    return float(np.polyfit(x, y, 1)[0])


if __name__ == "__main__":
    main()
