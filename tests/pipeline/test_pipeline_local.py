"""The whole pipeline, for real, through kfp.local: tune, retrain across seeds and nodes, aggregate."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.slow
PLANNED_RUNS = 8  # tiny config: 2 init seeds x 2 repeats on the reference, 2 x 2 again on cpu-sse41


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("DRIFTLAB_DB_URL", None)
    return subprocess.run([sys.executable, "-m", "driftlab", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def run_rows(home: Path) -> list[tuple]:
    engine = sa.create_engine(f"sqlite:///{home / 'driftlab.sqlite'}")
    with engine.connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT key, stage, profile, status, weights_digest FROM driftlab_runs ORDER BY key")))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    config = tmp / "tiny.yaml"
    from conftest import TINY_CONFIG

    config.write_text(TINY_CONFIG)
    home = tmp / "home"
    # A wide terminal for rich: the report paths must print whole, one per line.
    proc = run_cli("run", str(config), "--home", str(home), "--campaign", "e2e", env={"COLUMNS": "400"})
    return config, home, proc


def test_pipeline_runs_end_to_end_and_prints_the_report_path(first_run):
    config, home, proc = first_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Pipeline 'driftlab' finished with status SUCCESS" in proc.stdout
    assert "Sources of variation" in proc.stdout
    report_md = next(home.glob("reports/e2e/*/report.md"))
    lines = [line.strip() for line in proc.stdout.splitlines()]
    assert f"Report: {report_md.with_name('report.html')}" in lines, proc.stdout[-3000:]
    assert str(report_md) in lines, f"the full path of report.md is not on a line of its own:\n{proc.stdout[-3000:]}"
    assert str(report_md.with_name("report.json")) in lines, proc.stdout[-3000:]
    result = json.loads(report_md.with_name("report.json").read_text())
    assert result["schema"].startswith("driftlab.report/")
    assert result["counts"]["ok"] == PLANNED_RUNS
    assert result["sources"]["init"]["varied"] is True
    assert result["sources"]["shuffle"]["varied"] is False, "one shuffle seed: reported as not varied"
    assert result["determinism"]["repeats_on"]["identical_share"] == 1.0
    assert result["hardware"]["cpu-sse41"]["compared"] == 2
    assert result["hardware"]["cpu-sse41"]["identical_share"] == 0.0, "the ISA cap must change the weights"
    assert result["gate"]["status"] == "PASS"
    assert result["tuning"]["n_complete"] == 2, "a global budget of 2 trials across 2 workers"


def test_every_planned_run_is_recorded_once_with_its_stage(first_run):
    _, home, _ = first_run
    rows = run_rows(home)
    assert len(rows) == PLANNED_RUNS == len({r[0] for r in rows})
    assert {(r[1], r[2]) for r in rows} == {("seeds", "cpu-default"), ("nodes", "cpu-sse41")}
    assert all(r[3] == "ok" for r in rows)


def test_rerun_resumes_and_trains_nothing_twice(first_run):
    config, home, _ = first_run
    before = run_rows(home)
    proc = run_cli("run", str(config), "--home", str(home), "--campaign", "e2e")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert run_rows(home) == before, "a re-run of a finished campaign must not train or rewrite any run"
    log = next(iter(sorted(home.glob("logs/e2e-*.log"))[-1:]))
    assert f"{PLANNED_RUNS // 2}/{PLANNED_RUNS // 2} runs already recorded" in log.read_text()


def test_the_run_lends_its_warm_workers_across_checks_and_tasks(first_run):
    _, home, proc = first_run
    log = next(iter(sorted(home.glob("logs/e2e-*.log"))[:1])).read_text()
    found = re.search(r"training workers: (\d+) started \(logs: (\S+)\), lent (\d+) time", log)
    assert found, log[-3000:]
    started, pattern, lent = int(found[1]), found[2], int(found[3])
    # cpu-default: the build check, then 2 tune workers and the seed stage's workers (without lending: 1 + 2 + 2
    # processes importing TensorFlow); cpu-sse41: its own workers.
    assert started < lent, (started, lent)
    logs = list((home / "logs").glob(pattern))
    assert len(logs) == started, "each worker started has one log"
    assert len([p for p in logs if p.name.startswith("worker-cpu-default-")]) <= 2, [p.name for p in logs]
    assert [p for p in logs if p.name.startswith("worker-cpu-sse41-")], "control: another profile, other workers"
