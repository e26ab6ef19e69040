"""Benchmark (not a test): aggregation time and peak memory vs record count, and HTML time.

    .venv/bin/python benchmarks/bench_drift.py            # 1,000 .. 10,000 records x 1,000 eval rows
    .venv/bin/python benchmarks/bench_drift.py --html /tmp/dlhome/reports/...  # HTML from a report.json

Each size runs in a fresh process so that peak RSS belongs to that size alone.
Targets (issue 5): 10,000 records x 1,000 predictions in <= 10 s and <= 2 GiB on
2 cores; the HTML report of the quickstart in <= 5 s.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SIZES = (1_000, 2_000, 5_000, 10_000)
SEEDS_PER_INIT = 10 * 5  # shuffle x split seeds of the synthetic plan below


def one(n_records: int) -> dict:
    from driftlab.config import ExperimentConfig
    from driftlab.drift import analyze
    from support.synthetic import SyntheticPlan, generate

    # Reference: init x 10 shuffle x 5 split x 2 repeats x det on/off; two more profiles repeat det-on runs.
    n_init = max(1, round(n_records / (SEEDS_PER_INIT * 2 * 2 + 2 * SEEDS_PER_INIT * 2)))
    plan = SyntheticPlan(init=tuple(range(n_init)), shuffle=tuple(range(10)), split=tuple(range(5)), repeats=2,
                         profiles=("ref", "b", "c"), n_eval=1000, n_classes=10,
                         sigmas={"init": 0.02, "shuffle": 0.01, "hardware": 0.005, "nondeterminism": 0.01})
    records = generate(plan)
    cfg = ExperimentConfig.model_validate({"name": "bench", "dataset": {"name": "digits"},
                                           "profiles": {"auto": True}})
    analyze(records[:50], cfg, reference="ref")  # imports and first-call costs out of the timing
    t0 = time.perf_counter()
    analyze(records, cfg, reference="ref")
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"records": len(records), "eval_rows": 1000, "seconds": round(seconds, 2), "peak_mib": round(peak)}


def html(report_json: str) -> dict:
    from driftlab.report import to_html

    result = json.loads(open(report_json, encoding="utf-8").read())
    t0 = time.perf_counter()
    page = to_html(result)
    return {"html_seconds": round(time.perf_counter() - t0, 4), "bytes": len(page)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--html", help="time the HTML report of this report.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="record counts")
    parser.add_argument("--repeats", type=int, default=1, help="runs per size (median, min, max)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    if args.html:
        print(json.dumps(html(args.html)))
        return
    rows = []
    for n in args.sizes:
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True,
                                 check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(out.stdout.strip(), flush=True)
        secs = sorted(r["seconds"] for r in runs)
        rows.append({"records": runs[0]["records"], "seconds_median": secs[len(secs) // 2],
                     "seconds_min": secs[0], "seconds_max": secs[-1],
                     "peak_mib": max(r["peak_mib"] for r in runs)})
    summary = {"sizes": rows, "time_exponent": scaling_exponent(rows, "seconds_median"),
               "memory_exponent": scaling_exponent(rows, "peak_mib")}
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
