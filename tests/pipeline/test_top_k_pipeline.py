"""`tuning.retrain_top_k` through kfp.local: the runner-ups are retrained and compared, never mixed into drift."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

CONFIG = """\
name: top-k
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: mlp, epochs: 1, batch_size: 64, hyperparameters: {layers: 1}}
search_space:
  units: {type: int, low: 8, high: 64, log: true}
  learning_rate: {type: float, low: 0.001, high: 0.02, log: true}
tuning: {trials: 4, workers: 1, seed: 0, top_k: 3, retrain_top_k: 3}
seeds: {init: [0, 1], shuffle: [0, 1], split: [0], repeats: 1, deterministic: [true]}
profiles: {reference: cpu-default, pools: [{name: cpu-default}]}
"""


def test_top_three_configurations_get_a_p_a_beats_b_table(tmp_path):
    (tmp_path / "exp.yaml").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if k != "DRIFTLAB_DB_URL"}
    proc = subprocess.run([sys.executable, "-m", "driftlab", "run", "exp.yaml", "--home", "home"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    report_dir = sorted((tmp_path / "home" / "reports" / "default").glob("*"))[-1]
    result = json.loads((report_dir / "report.json").read_text())
    block = result["top_k"]
    assert block["k"] == 3 and [c["runs"] for c in block["configs"]] == [4, 4, 4]
    assert [(p["a"], p["b"], p["n"]) for p in block["pairs"]] == [(1, 2, 4), (1, 3, 4), (2, 3, 4)]
    assert all(0 <= p["p_a_beats_b"] <= 1 and p["ci95"][0] <= p["p_a_beats_b"] <= p["ci95"][1] for p in block["pairs"])
    assert result["counts"]["runs"] == result["counts"]["planned"] == 4, "runner-up runs never enter drift counts"
    assert "P(A beats B)" in (report_dir / "report.md").read_text()
    assert "Top configurations retrained over seeds" in (report_dir / "report.html").read_text()
