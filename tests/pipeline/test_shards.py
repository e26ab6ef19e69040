"""Shards: the seed plan and each pool's plan fan out over pods, every planned run recorded once.

A real ``driftlab run`` (kfp.local) with ``seeds.shards: 2`` and a pool with ``shards: 2``
runs two retrain-across-seeds tasks and two retrain-across-nodes tasks; the same
experiment without shards runs one of each. Both record every planned run exactly
once, and their reports agree on every figure (the control: the shard tasks really
ran, one line per shard in the log).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from driftlab import stages
from driftlab.config import load_config_text, plan_hash

CONFIG = """\
name: shards
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: mlp, epochs: 1, batch_size: 64, hyperparameters: {units: 16, learning_rate: 0.01}}
seeds: {init: [0, 1, 2], shuffle: [0], split: [0], repeats: 1, deterministic: [true]{seed_shards}}
profiles: {reference: cpu-default, pools: [{name: cpu-default}, {name: cpu-sse41, isa: SSE41{pool_shards}}]}
"""
SHARDED = CONFIG.replace("{seed_shards}", ", shards: 2").replace("{pool_shards}", ", shards: 2")
WHOLE = CONFIG.replace("{seed_shards}", "").replace("{pool_shards}", "")
PLANNED = 3 + 3  # three init seeds on the reference, the same three on cpu-sse41
#: Report fields that describe the execution, not the measurement.
EXECUTION_FIELDS = ("campaign", "generated_at", "execution", "paths", "timings", "history", "tuning")


def test_shards_do_not_change_the_plan_or_the_run_keys(monkeypatch):
    monkeypatch.delenv("DRIFTLAB_WHERE", raising=False)
    sharded, whole = load_config_text(SHARDED, "x"), load_config_text(WHOLE, "x")
    assert plan_hash(sharded) == plan_hash(whole), "how the work is split is not part of the plan"
    assert [t["runs"] for t in stages.seed_tasks(SHARDED)] == [2, 1]
    whole_items = stages.seed_tasks(WHOLE)
    assert [(t["shard_index"], t["shard_count"], t["runs"]) for t in whole_items] == [(0, 1, 3)]
    nodes = stages.node_tasks(SHARDED, "{}")
    assert [(n["profile"], n["shard_index"], n["shard_count"], n["runs"]) for n in nodes] == \
        [("cpu-sse41", 0, 2, 2), ("cpu-sse41", 1, 2, 1)]
    specs_a = {s.key for s in stages._run_specs(sharded, "c", {}, sharded.profiles.pools[0],
                                                 stages.seed_points(sharded.seeds), "seeds")}
    specs_b = {s.key for s in stages._run_specs(whole, "c", {}, whole.profiles.pools[0],
                                                 stages.seed_points(whole.seeds), "seeds")}
    assert specs_a == specs_b, "a shard trains exactly the runs the whole stage would"


def test_on_a_cluster_unset_shards_follow_runs_per_shard(monkeypatch):
    monkeypatch.setenv("DRIFTLAB_WHERE", "cluster")
    monkeypatch.setenv("DRIFTLAB_RUNS_PER_SHARD", "2")
    assert [t["runs"] for t in stages.seed_tasks(WHOLE)] == [2, 1]
    monkeypatch.delenv("DRIFTLAB_WHERE")
    assert len(stages.seed_tasks(WHOLE)) == 1, "locally unset shards mean one task"


def _run(tmp_path: Path, text: str, campaign: str) -> tuple[subprocess.CompletedProcess, Path]:
    config = tmp_path / f"{campaign}.yaml"
    config.write_text(text)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "DRIFTLAB_DB_URL"}
    proc = subprocess.run([sys.executable, "-m", "driftlab", "run", str(config), "--home", str(home),
                           "--campaign", campaign], capture_output=True, text=True, timeout=900, env=env)
    return proc, home


def _measured(report: dict) -> dict:
    out = {k: v for k, v in report.items() if k not in EXECUTION_FIELDS}
    # The campaign's name and the file's hash differ (the file says shards: 2); the plan is the same.
    out["experiment"] = {k: v for k, v in report["experiment"].items() if k not in ("campaign", "config_hash")}
    return out


@pytest.mark.slow
def test_two_shards_per_stage_record_every_run_once_and_report_the_same(tmp_path):
    sharded, home = _run(tmp_path, SHARDED, "sharded")
    assert sharded.returncode == 0, sharded.stdout[-3000:] + sharded.stderr[-3000:]
    whole, _ = _run(tmp_path, WHOLE, "whole")
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]
    log = "\n".join(p.read_text() for p in (home / "logs").glob("sharded-*.log"))
    for line in ("retrain across seeds · cpu-default: 2 runs planned", "shard 1/2", "shard 2/2",
                 "retrain across nodes · cpu-sse41: 1 runs planned"):
        assert line in log, f"control: the shard tasks ran ({line!r} not in the log)"
    engine = sa.create_engine(f"sqlite:///{home / 'driftlab.sqlite'}")
    with engine.connect() as conn:
        rows = list(conn.execute(sa.text("SELECT campaign, key, COUNT(*) FROM driftlab_runs WHERE status = 'ok' "
                                         "GROUP BY campaign, key")))
    per_campaign = {c: sorted(k for cc, k, _ in rows if cc == c) for c in ("sharded", "whole")}
    assert all(n == 1 for _, _, n in rows), "a run recorded twice"
    assert len(per_campaign["sharded"]) == len(per_campaign["whole"]) == PLANNED, "every planned run recorded"
    reports = [json.loads(next(home.glob(f"reports/{c}/*/report.json")).read_text()) for c in ("sharded", "whole")]
    assert _measured(reports[0]) == _measured(reports[1]), "shards changed a figure of the report"
    assert reports[0]["counts"]["ok"] == PLANNED
