"""Two executions of the same retrain stage at once, against one results database (SQLite and PostgreSQL).

Two processes call ``stages.retrain_seeds`` with the same experiment file and
campaign at the same moment, on a database neither has used yet (so they also
race to create the schema and the experiment row). A key may be trained by
both (neither knows the other has started it), but it must be recorded once:
the tables hold exactly the planned keys, one experiment row, nothing corrupt.
The test reports how many runs were trained twice (wasted, not wrong).

As a control that the race really happened, each process prints the wall-clock
window of its ``retrain_seeds`` call, and the two windows must overlap: two
stages that ran one after the other would pass the rest trivially.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from support.faults import STAGE_SCRIPT, figure, kill_group, run_counts, summary_of

pytestmark = pytest.mark.slow

PLAN_RUNS = 4
STAGE_TIMEOUT_S = 300

CONFIG = """\
name: race
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: mlp, epochs: 1, batch_size: 64, hyperparameters: {units: 16}}
seeds: {init: [0, 1], shuffle: [0], split: [0], repeats: 2, deterministic: [true]}
profiles: {reference: cpu-default, pools: [{name: cpu-default}]}
"""

# fault_helpers.STAGE_SCRIPT, with the wall-clock window of the stage call printed after its summary.
STAGE_CALL = "summary = stages.retrain_seeds("
TIMED_STAGE_SCRIPT = (STAGE_SCRIPT.replace(STAGE_CALL, f"import time\nstarted = time.time()\n{STAGE_CALL}")
                      + 'print("WINDOW " + json.dumps([started, time.time()]), flush=True)\n')


def start_timed_stage(config_path: Path, campaign: str, env: dict[str, str]) -> subprocess.Popen:
    """As ``fault_helpers.start_stage`` (URL by environment only, a process group of its own), timed."""
    full = {**os.environ, **env}
    full.pop("DRIFTLAB_WHERE", None)
    return subprocess.Popen([sys.executable, "-c", TIMED_STAGE_SCRIPT, str(config_path), campaign, "{}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full,
                            text=True, start_new_session=True)


def window_of(stdout: str) -> tuple[float, float]:
    assert "WINDOW " in stdout, f"the stage printed no window: {stdout[-2000:]}"
    start, end = json.loads(stdout.split("WINDOW ", 1)[1].splitlines()[0])
    return start, end


def test_two_stages_at_once_record_every_key_once(database_url, tmp_path, request):
    backend = sa.engine.make_url(database_url).get_backend_name()
    row = figure(request, f"same retrain stage twice at once ({backend})", cases=1)
    config = tmp_path / "race.yaml"
    config.write_text(CONFIG)
    env = {"DRIFTLAB_DB_URL": database_url, "DRIFTLAB_HOME": str(tmp_path / "home"), "DRIFTLAB_JOBS": "1"}
    assert STAGE_SCRIPT.count(STAGE_CALL) == 1, "fault_helpers.STAGE_SCRIPT changed: time its stage call again"
    stages = [start_timed_stage(config, "c", env) for _ in range(2)]
    try:
        results = [s.communicate(timeout=STAGE_TIMEOUT_S) for s in stages]
    finally:
        for s in stages:
            kill_group(s)
    for s, (out, err) in zip(stages, results):
        assert s.returncode == 0, err[-3000:]
    summaries = [summary_of(out) for out, _ in results]
    windows = [window_of(out) for out, _ in results]
    t0 = min(start for start, _ in windows)
    assert max(start for start, _ in windows) < min(end for _, end in windows), (
        "control: the two stages did not run at the same time, so nothing raced (seconds: "
        + ", ".join(f"{start - t0:.2f}-{end - t0:.2f}" for start, end in windows) + ")")
    assert all(x["failed"] == 0 and x["planned"] == PLAN_RUNS for x in summaries), summaries
    trained = sum(x["trained"] for x in summaries)
    assert trained >= PLAN_RUNS, "between them the two stages trained every planned run"

    counts = run_counts(database_url, "race")
    assert counts["rows"] == counts["keys"] == counts["ok"] == PLAN_RUNS, counts
    assert counts["experiment_rows"] == 1, "the racing stages share one experiment row"
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        if backend == "sqlite":
            assert conn.execute(sa.text("PRAGMA integrity_check")).scalar_one() == "ok"
        digests = conn.execute(sa.text(
            "SELECT init_seed, count(DISTINCT weights_digest) FROM driftlab_runs GROUP BY init_seed")).all()
    engine.dispose()
    assert all(n == 1 for _, n in digests) and len(digests) == 2, \
        f"each stored run is whole: deterministic repeats of one seed share one digest ({digests})"
    row.update(lost=0, duplicates=counts["rows"] - counts["keys"], wasted=trained - PLAN_RUNS,
               note=f"{trained} runs trained for {PLAN_RUNS} keys")
