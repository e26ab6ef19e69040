"""Run the reliability suite and turn its results into RELIABILITY.md's table.

The figures come from the tests themselves: each fault test attaches a row
(fault, cases, runs lost, duplicate runs, wasted runs, time to recover) to
its pytest item (``tests/fault_helpers.figure``), and whether its cases
passed comes from pytest's own outcome. Tests of other parts that inject
faults too (interrupted stages, dead tuning workers) are run alongside and
listed by name with their outcome; their assertions cover runs lost and
duplicates (each asserts every planned run recorded exactly once).

Usage (from the repository root, with PostgreSQL up)::

    .venv/bin/python scripts/fault_harness.py                 # print the table
    .venv/bin/python scripts/fault_harness.py --write         # also update RELIABILITY.md
    .venv/bin/python scripts/fault_harness.py --only-mine     # skip the referenced tests of other parts
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MINE = ["tests/reliability/test_fault_database.py", "tests/reliability/test_fault_concurrency.py", "tests/reliability/test_fault_runs.py",
        "tests/reliability/test_fault_store.py", "tests/reliability/test_bad_input.py", "tests/reliability/test_security.py",
        # issue 14: secrets from user code, bounded inputs, validate before run, collisions, abandoned runs, hangs
        "tests/reliability/test_user_code_secrets.py", "tests/reliability/test_input_limits.py",
        "tests/reliability/test_preflight.py", "tests/reliability/test_local_collisions.py",
        "tests/storage/test_abandoned.py", "tests/runs/test_run_timeout.py"]
#: Fault tests owned by other parts: (test node id, a part of its parameter id or "", the fault it injects).
REFERENCED = [
    ("tests/reliability/test_resume.py::test_interrupted_stage_resumes_with_every_run_recorded_once", "sigint",
     "retrain stage interrupted (Ctrl-C), re-run resumes"),
    ("tests/reliability/test_resume.py::test_interrupted_stage_resumes_with_every_run_recorded_once", "sigkill",
     "retrain stage SIGKILLed (preemption): workers die with it, re-run resumes"),
    ("tests/tuning/test_tuning_cluster.py::test_sigkilled_worker_trial_fails_and_is_retried", "",
     "tune worker SIGKILLed: its trial failed and retried"),
    ("tests/tuning/test_tuning_cluster.py::test_workers_survive_dropped_connections", "",
     "tune workers' DB connections dropped"),
    ("tests/tuning/test_tuning_cluster.py::test_workers_meet_the_budget_exactly", "",
     "8 and 16 concurrent tune workers, one study: exact budget"),
    ("tests/tuning/test_tuning_local.py::test_rerun_reclaims_a_trial_left_running_by_a_dead_local_worker", "",
     "dead local tune worker: trial reclaimed on re-run"),
    ("tests/config/test_seedplan.py::test_shards_partition_the_plan", "",
     "shards partition the plan (a retried pod redoes only its shard)"),
    ("tests/pipeline/test_shards.py::test_two_shards_per_stage_record_every_run_once_and_report_the_same", "",
     "`driftlab run` with 2 shards per stage: every planned run recorded once, report equal to unsharded"),
    ("tests/storage/test_db.py::test_safe_url_masks_every_credential_form", "",
     "DB password in every form libpq/SQLAlchemy accept (userinfo, ?password=, DSN password=) masked where shown"),
    ("tests/storage/test_db.py::test_safe_url_never_shows_the_password_of_a_malformed_url", "",
     "DB password in a malformed URL masked where shown"),
    ("tests/tuning/test_tune_tasks.py::test_local_tasks_cover_every_worker_once", "",
     "`tuning.workers` above 2 locally: every worker index runs once across kfp.local's 2 tasks"),
    ("tests/tuning/test_tune_tasks.py::test_three_workers_run_at_once_on_two_local_tasks", "",
     "`tuning.workers` above 2 locally: every worker index runs once across kfp.local's 2 tasks"),
    ("tests/runs/test_depot.py::test_a_task_that_dies_holding_a_worker_takes_the_worker_with_it", "",
     "task SIGKILLed holding a warm worker lent by `driftlab run`: the worker is killed, never lent again"),
    ("tests/runs/test_depot.py::test_the_depot_lends_no_database_credential", "",
     "DB password: warm workers lent across a run's tasks (env, /proc)"),
]
FIGURE = "reliability"
BEGIN, END = "<!-- fault-harness:begin -->", "<!-- fault-harness:end -->"


class Collector:
    """A pytest plugin: every test's outcome, duration and attached figures."""

    def __init__(self) -> None:
        self.results: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logreport(self, report) -> None:  # noqa: D401 - pytest hook
        entry = self.results.setdefault(report.nodeid, {"outcome": "passed", "seconds": 0.0, "figures": []})
        entry["seconds"] += report.duration
        if report.failed:
            entry["outcome"] = "failed"
        elif report.skipped and entry["outcome"] != "failed":
            entry["outcome"] = "skipped"
        if report.when == "call" or (report.when == "setup" and report.failed):
            entry["figures"] = [dict(v) for k, v in report.user_properties if k == FIGURE]


def run(paths: list[str], extra: list[str]) -> Collector:
    import pytest

    collector = Collector()
    os.chdir(ROOT)
    pytest.main(["-q", "-p", "no:cacheprovider", *extra, *paths], plugins=[collector])
    return collector


def rows(collector: Collector) -> list[dict[str, Any]]:
    """One row per fault: figures of one fault from several tests (parametrized) are summed."""
    merged: dict[str, dict[str, Any]] = {}
    for nodeid, entry in collector.results.items():
        figures = entry["figures"] or _referenced(nodeid)
        for fig in figures:
            row = merged.setdefault(fig["fault"], {"fault": fig["fault"], "cases": 0, "passed": 0, "lost": 0,
                                                    "duplicates": 0, "wasted": None, "recover_s": None,
                                                    "tests": [], "notes": []})
            cases = fig.get("cases") or 0
            row["cases"] += cases
            row["passed"] += cases if entry["outcome"] == "passed" else 0
            for key in ("lost", "duplicates"):
                row[key] = None if fig.get(key) is None or row[key] is None else row[key] + fig[key]
            if fig.get("wasted") is not None:
                row["wasted"] = (row["wasted"] or 0) + fig["wasted"]
            if fig.get("recover_s") is not None:
                row["recover_s"] = max(row["recover_s"] or 0.0, fig["recover_s"])
            if entry["outcome"] != "passed":
                row["notes"].append(f"{entry['outcome'].upper()}: {nodeid}")
            elif fig.get("note"):
                row["notes"].append(fig["note"])
            row["tests"].append(nodeid.split("::")[0])
    return list(merged.values())


def _referenced(nodeid: str) -> list[dict[str, Any]]:
    for node, part, fault in REFERENCED:
        if nodeid.startswith(node) and part in nodeid.partition("[")[2]:
            # These tests assert every planned run recorded exactly once: pass means 0 lost, 0 duplicates.
            return [{"fault": fault, "cases": 1, "lost": 0, "duplicates": 0, "note": "", "recover_s": None}]
    return []


def table(result_rows: list[dict[str, Any]]) -> str:
    def cell(value: Any, suffix: str = "") -> str:
        if value is None:
            return "—"
        return f"{value:.1f}{suffix}" if isinstance(value, float) else f"{value}{suffix}"

    lines = ["| fault or bad input | cases | passed | runs lost | duplicate runs | wasted runs | time to recover "
             "| test file | notes |", "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in result_rows:
        tests = ", ".join(sorted(set(r["tests"])))
        lines.append(f"| {r['fault']} | {r['cases']} | {r['passed']} | {cell(r['lost'])} | {cell(r['duplicates'])} "
                     f"| {cell(r['wasted'])} | {cell(r['recover_s'], ' s')} | {tests} | {'; '.join(r['notes'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only-mine", action="store_true", help="skip the referenced fault tests of other parts")
    parser.add_argument("--write", action="store_true", help="replace the table in RELIABILITY.md")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, e.g. -m 'not slow'")
    args = parser.parse_args(argv)
    paths = list(MINE) + ([] if args.only_mine else sorted({node for node, _, _ in REFERENCED}))
    t0 = time.monotonic()
    collector = run(paths, args.pytest_args)
    wall = time.monotonic() - t0
    result_rows = rows(collector)
    failed = [k for k, v in collector.results.items() if v["outcome"] == "failed"]
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    text = (f"{table(result_rows)}\n\n_{len(collector.results)} tests, {len(failed)} failed, "
            f"{wall:.0f} s wall on this machine, {stamp}; command: "
            f"`.venv/bin/python scripts/fault_harness.py{' --only-mine' if args.only_mine else ''} --write`_")
    print("\n" + text)
    if args.write:
        doc = ROOT / "RELIABILITY.md"
        body = doc.read_text()
        start, end = body.index(BEGIN) + len(BEGIN), body.index(END)
        doc.write_text(body[:start] + "\n" + text + "\n" + body[end:])
        print(f"\nwrote the table into {doc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
