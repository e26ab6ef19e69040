"""Benchmark (not a test): `driftlab run` on the quickstart — overhead over training, and peak memory.

    .venv/bin/python benchmarks/bench_pipeline.py --repeats 3 --json out.json

Each repeat runs the whole pipeline in a fresh home (every run trains), samples
the resident memory of the whole process tree every 0.2 s, and reads back from
the results database and the run log:

- training: the sum over runs and tuning trials of in-run fit + predict time (a trial's
  ``train_s`` user attribute);
- overhead ratio: wall ÷ training (the issue's figure) and wall ÷ (training ÷
  parallel workers), the latter against the ideal schedule on this machine;
- CPU: user + system seconds of the whole process tree; wall ÷ (CPU ÷ cores) is 1.0 when
  every core is busy all the time, and training ÷ CPU is the share of that work that trains;
- a per-task breakdown from the kfp.local log (which task's wall time is spent
  where), and the TensorFlow import cost times the processes that import it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
TASK_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d+) - \w+ - (?:Executing task '([\w-]+)'|Task '([\w-]+)' finished)")


def tree_rss_bytes(root_pid: int) -> int:
    """Resident memory of a process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def _seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def task_walls(log_text: str) -> dict[str, float]:
    starts: dict[str, list[float]] = {}
    walls: dict[str, float] = {}
    for line in log_text.splitlines():
        m = TASK_LINE.match(line)
        if not m:
            continue
        t = _seconds(m.group(1))
        if m.group(2):
            starts.setdefault(m.group(2), []).append(t)
        elif m.group(3) and starts.get(m.group(3)):
            walls[m.group(3)] = walls.get(m.group(3), 0.0) + t - starts[m.group(3)].pop(0)
    return walls


def tf_import_seconds() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.perf_counter() - t0


def one_run(config: str, jobs: int | None) -> dict:
    home = Path(tempfile.mkdtemp(prefix="driftlab-bench-"))
    cmd = [str(ROOT / ".venv/bin/driftlab"), "run", config, "--home", str(home), "--campaign", "bench"]
    if jobs:
        cmd += ["--jobs", str(jobs)]
    env = {k: v for k, v in os.environ.items() if k != "DRIFTLAB_DB_URL"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    now = time.localtime()
    started = now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec + (time.time() % 1)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_bytes(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the whole tree: every process was waited for
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    sampler.join()
    if proc.returncode not in (0, 3):
        raise SystemExit(f"driftlab run failed ({proc.returncode}): {err.decode()[-2000:]}")
    engine = sa.create_engine(f"sqlite:///{home / 'driftlab.sqlite'}")
    with engine.connect() as conn:
        rows = list(conn.execute(sa.text("SELECT timings_json, deterministic, stage FROM driftlab_runs")))
    timings = [json.loads(t) for t, _, _ in rows]
    # Determinism on vs off: the seeds stage runs both on the reference profile.
    fit_on = [json.loads(t)["fit_s"] for t, d, stage in rows if d and stage == "seeds"]
    fit_off = [json.loads(t)["fit_s"] for t, d, stage in rows if not d and stage == "seeds"]
    runs_training = sum(t["fit_s"] + t["predict_s"] for t in timings)
    trials_training = tuning_training_seconds(home)
    build = sum(t["build_s"] for t in timings)
    log = next(home.glob("logs/bench-*.log")).read_text()
    det_ratio = (statistics.mean(fit_on) / statistics.mean(fit_off)) if fit_on and fit_off else None
    workers = re.search(r"training workers: (\d+) started .*?, lent (\d+) time", log)
    first_task = re.compile(TASK_LINE.pattern, re.M).search(log)
    return {"wall_s": wall, "cpu_s": cpu, "runs": len(timings), "training_s": runs_training + trials_training,
            "runs_training_s": runs_training, "trials_training_s": trials_training, "build_s": build,
            "determinism_fit_ratio": det_ratio, "before_first_task_s": (first_task and
                                                                         _seconds(first_task.group(1)) - started),
            "workers_started": int(workers[1]) if workers else None, "workers_lent": int(workers[2]) if workers else None,
            "peak_rss_mib": peak[0] / 2**20, "tasks": task_walls(log)}


def tuning_training_seconds(home: Path) -> float:
    """Fit + predict time of the tuning trials (each trial's ``train_s``), from the run's Optuna journal."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = home / "optuna-journal.log"
    if not journal.exists():
        return 0.0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(journal)))
    return sum(float(t.user_attrs.get("train_s", 0.0)) for summary in optuna.get_all_study_summaries(storage)
               for t in optuna.load_study(study_name=summary.study_name, storage=storage).trials)


def summarize(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="examples/quickstart.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    jobs = args.jobs or os.cpu_count() or 1
    runs = []
    for i in range(args.repeats):
        r = one_run(args.config, args.jobs)
        runs.append(r)
        print(f"run {i + 1}: wall {r['wall_s']:.1f}s, {r['runs']} runs, training {r['training_s']:.1f}s, "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
    tf_import = tf_import_seconds()
    tasks = sorted({t for r in runs for t in r["tasks"]})
    out = {
        "repeats": args.repeats, "jobs": jobs,
        "wall_s": summarize([r["wall_s"] for r in runs]),
        "training_s": summarize([r["training_s"] for r in runs]),
        "build_s": summarize([r["build_s"] for r in runs]),
        "cpu_s": summarize([r["cpu_s"] for r in runs]),
        "wall_vs_cpu_on_all_cores": summarize([r["wall_s"] / (r["cpu_s"] / jobs) for r in runs]),
        "training_share_of_cpu": summarize([r["training_s"] / r["cpu_s"] for r in runs]),
        "runs_training_s": summarize([r["runs_training_s"] for r in runs]),
        "trials_training_s": summarize([r["trials_training_s"] for r in runs]),
        "before_first_task_s": summarize([r["before_first_task_s"] or 0.0 for r in runs]),
        "workers_started": summarize([r["workers_started"] or 0 for r in runs]),
        "workers_lent": summarize([r["workers_lent"] or 0 for r in runs]),
        "overhead_ratio": summarize([r["wall_s"] / r["training_s"] for r in runs]),
        "overhead_ratio_vs_ideal_parallel": summarize([r["wall_s"] / (r["training_s"] / jobs) for r in runs]),
        "peak_rss_mib": summarize([r["peak_rss_mib"] for r in runs]),
        "determinism_fit_ratio": summarize([r["determinism_fit_ratio"] for r in runs
                                            if r["determinism_fit_ratio"] is not None] or [float("nan")]),
        "task_wall_s": {t: statistics.median(r["tasks"].get(t, 0.0) for r in runs) for t in tasks},
        "tf_import_s": tf_import,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
