"""End to end: two `driftlab run` campaigns of one tiny experiment (1 vs 3 epochs), then `driftlab compare`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CONFIG = """\
name: compare-user
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: mlp, epochs: EPOCHS, batch_size: 64, hyperparameters: {layers: 1, units: 32, dropout: 0.0}}
search_space:
  learning_rate: {type: float, low: 0.001, high: 0.002, log: true}
tuning: {trials: 2, workers: 1, seed: 0}
seeds: {init: [0, 1, 2], shuffle: [0], split: [0, 1], repeats: 1, deterministic: [true]}
profiles:
  reference: cpu-default
  pools: [{name: cpu-default}]
"""


def run(cwd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("DRIFTLAB_DB_URL", None)
    return subprocess.run([sys.executable, "-m", "driftlab", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_one_epoch_against_three_is_a_significant_difference(tmp_path):
    for epochs, campaign in ((1, "short"), (3, "long"), (3, "long-again")):
        path = tmp_path / f"exp{epochs}.yaml"
        path.write_text(CONFIG.replace("EPOCHS", str(epochs)))
        proc = run(tmp_path, "run", path.name, "--home", "home", "--campaign", campaign)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    newest = sorted((tmp_path / "home").glob("reports/long/*/report.json"))[-1]
    report = json.loads(newest.read_text())
    o = report["optimism"]  # tuned: the best trial's val_accuracy against retraining it
    assert o["metric"] == "val_accuracy" and o["retrained"]["n_levels"] == 6 and o["verdict"] is not None
    assert o["sentences"][0] in report["summary"]
    assert "## Tuner's optimism" in newest.with_name("report.md").read_text()

    proc = run(tmp_path, "compare", "short", "long", "--experiment", "compare-user", "--home", "home", "--gate",
               "--format", "json")
    assert proc.returncode == 3, (proc.stdout + proc.stderr)[-3000:]
    body = json.loads(proc.stdout)
    acc = next(r for r in body["rows"] if r["metric"] == "accuracy")
    assert acc["pairs"] == 6 and acc["flagged"] and acc["better"] == "long" and acc["mean_delta"] < 0
    # The control: two campaigns of the same plan (the same file) differ by nothing beyond seed noise.
    same = run(tmp_path, "compare", "long", "long-again", "--experiment", "compare-user", "--home", "home", "--gate")
    assert same.returncode == 0 and "0 difference(s) beyond seed noise" in same.stdout, same.stdout + same.stderr
