"""The user's path, end to end through kfp.local, from a folder outside the checkout.

Builders here are written the way Keras users write them: hyperparameters go
straight into layers, with no defensive casts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.slow

TYPED_BUILDER = '''
import json
from pathlib import Path

import keras

SEEN = Path(__file__).with_name("seen.jsonl")


def build(hparams, *, n_features, n_outputs, task):
    with SEEN.open("a") as fh:
        fh.write(json.dumps({k: type(v).__name__ for k, v in hparams.items()}) + "\\n")
    assert type(hparams["units"]) is int, f"units arrived as {type(hparams['units']).__name__}"
    model = keras.Sequential([
        keras.Input((n_features,)),
        keras.layers.Dense(hparams["units"], activation=hparams["activation"], use_bias=hparams["bias"]),
        keras.layers.Dropout(hparams["dropout"]),
        keras.layers.Dense(n_outputs, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(hparams["learning_rate"]),
                  loss="sparse_categorical_crossentropy")
    return model
'''

TYPED_CONFIG = """\
name: typed-user
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model:
  builder: typed_models:build
  epochs: 2
  batch_size: 64
  hyperparameters: {bias: true}
search_space:
  units: {type: int, low: 8, high: 32}
  learning_rate: {type: float, low: 0.001, high: 0.01, log: true}
  dropout: {type: float, low: 0.0, high: 0.2}
  activation: {type: categorical, choices: [relu, tanh]}
tuning: {trials: 2, workers: 1, seed: 0}
seeds: {init: [0, 1], shuffle: [0], split: [0], repeats: 1, deterministic: [true]}
profiles:
  reference: cpu-default
  pools: [{name: cpu-default}, {name: cpu-sse41, isa: SSE41}]
"""

FAILING_BUILDER = '''
import keras


def build(hparams, *, n_features, n_outputs, task):
    width = hparams.get("width", 0)
    if width <= 0:
        raise ValueError("width must be positive")
    return keras.Sequential([keras.Input((n_features,)), keras.layers.Dense(width, activation="relu"),
                             keras.layers.Dense(n_outputs, activation="softmax")])
'''

FAILING_CONFIG = """\
name: failing-user
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: user_models:build, epochs: 1, batch_size: 64, hyperparameters: {width: 16}}
seeds: {init: [0, 1], shuffle: [0], split: [0], repeats: 1, deterministic: [true]}
profiles:
  reference: cpu-default
  pools: [{name: cpu-default}, {name: cpu-sse41, isa: SSE41}]
tolerances: {max_disagreement: 0.5}
"""


def run(cwd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("DRIFTLAB_DB_URL", None)
    return subprocess.run([sys.executable, "-m", "driftlab", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=timeout)


def report_of(home: Path, campaign: str) -> dict:
    newest = sorted(home.glob(f"reports/{campaign}/*/report.json"))[-1]
    return json.loads(newest.read_text())


def test_a_builder_that_passes_hyperparameters_straight_to_layers_trains_every_run(tmp_path):
    (tmp_path / "typed_models.py").write_text(TYPED_BUILDER)
    (tmp_path / "exp.yaml").write_text(TYPED_CONFIG)
    proc = run(tmp_path, "run", "exp.yaml", "--home", "home")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = report_of(tmp_path / "home", "default")
    assert result["counts"]["ok"] == result["counts"]["planned"] == 4 and result["counts"]["failed"] == 0
    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    assert len(seen) >= 2 + 4, "two trials and four retrained runs (two profiles) called the builder"
    assert all(s == {"units": "int", "learning_rate": "float", "dropout": "float", "activation": "str",
                     "bias": "bool"} for s in seen), seen
    tuning = result["tuning"]
    assert type(tuning["best_trial"]) is int and type(tuning["n_complete"]) is int and tuning["n_complete"] == 2
    md = (sorted((tmp_path / "home").glob("reports/default/*/report.md"))[-1]).read_text()
    section = md.split("## Tuning")[1].split("\n## ")[0]
    assert f"{tuning['n_complete']}.0" not in section and f"trial {tuning['best_trial']}.0" not in section, section
    assert f"trial {tuning['best_trial']}" in section and "None" not in section


def test_a_campaign_whose_every_run_fails_is_incomplete_and_the_fixed_builder_passes(tmp_path):
    module = tmp_path / "user_models.py"
    # Negative where runs train (a worker knows its profile), valid when `driftlab run` builds it once first:
    # a builder that always raises is refused before the pipeline starts (tests/reliability/test_preflight.py).
    module.write_text(FAILING_BUILDER.replace(
        'hparams.get("width", 0)', '(-1 if __import__("os").environ.get("DRIFTLAB_PROFILE") and '
                                    'not __import__("os").environ.get("DRIFTLAB_BUILD_CHECK") else 1) * '
                                    'hparams.get("width", 0)'))
    (tmp_path / "exp.yaml").write_text(FAILING_CONFIG)
    proc = run(tmp_path, "run", "exp.yaml", "--home", "home", "--campaign", "c")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out[-3000:]
    assert "ValueError: width must be positive" in out and "Traceback (most recent call last)" not in out
    result = report_of(tmp_path / "home", "c")
    assert result["gate"]["status"] == "INCOMPLETE" and result["counts"]["failed"] == 4
    assert result["summary"][0].startswith(
        "4 of 4 planned runs failed: 4× model.builder: 'user_models:build' raised ValueError: width must be positive")
    report_json = sorted((tmp_path / "home").glob("reports/c/*/report.json"))[-1]
    gate = run(tmp_path, "gate", str(report_json))
    assert gate.returncode == 4 and "gate: INCOMPLETE" in gate.stdout

    # Control: the same campaign, the builder fixed, passes (failed runs are trained again).
    module.write_text(FAILING_BUILDER)
    proc = run(tmp_path, "run", "exp.yaml", "--home", "home", "--campaign", "c")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    result = report_of(tmp_path / "home", "c")
    assert result["gate"]["status"] == "PASS" and result["counts"]["ok"] == 4 and result["counts"]["failed"] == 0


def test_an_edited_experiment_never_mixes_into_its_old_campaign(tmp_path):
    (tmp_path / "user_models.py").write_text(FAILING_BUILDER)
    exp = tmp_path / "exp.yaml"
    exp.write_text(FAILING_CONFIG.replace("profiles:", "# one profile\nprofiles:").replace(
        "pools: [{name: cpu-default}, {name: cpu-sse41, isa: SSE41}]", "pools: [{name: cpu-default}]"))
    assert run(tmp_path, "run", "exp.yaml", "--home", "home").returncode == 0
    reports_before = sorted((tmp_path / "home").glob("reports/default/*"))

    exp.write_text(exp.read_text().replace("epochs: 1", "epochs: 2"))
    proc = run(tmp_path, "run", "exp.yaml", "--home", "home")
    assert proc.returncode == 2, (proc.stdout + proc.stderr)[-3000:]
    assert "model.epochs: 1 → 2" in proc.stderr and "--replace" in proc.stderr
    assert sorted((tmp_path / "home").glob("reports/default/*")) == reports_before, "refused before any report"

    proc = run(tmp_path, "run", "exp.yaml", "--home", "home", "--replace")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    result = report_of(tmp_path / "home", "default")
    assert result["counts"]["runs"] == result["counts"]["planned"] == 2, "only the current plan's runs"
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'home' / 'driftlab.sqlite'}")
    with engine.connect() as conn:
        hashes = list(conn.execute(sa.text("SELECT plan_hash FROM driftlab_runs")).scalars())
    assert hashes == [result["experiment"]["plan_hash"]] * 2, "--replace discarded the old plan's runs"
