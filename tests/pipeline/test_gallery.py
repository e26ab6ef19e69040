"""The gallery (examples/gallery/) runs as a user runs it: from a copy of the folder outside the checkout.

Each example is copied to a scratch folder, and ``python -m driftlab run FILE.yaml`` runs there with that
folder (and only it) on PYTHONPATH, so the builders are imported exactly as a user's would be. Every
planned run must finish, and the report must hold no NaN or infinity.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

GALLERY = Path(__file__).resolve().parents[2] / "examples" / "gallery"
TIMEOUT_S = 600


@pytest.fixture
def gallery(tmp_path) -> Path:
    """A copy of examples/gallery/, without anything a previous run left in the checkout."""
    dest = tmp_path / "gallery"
    shutil.copytree(GALLERY, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.db", "*.log",
                                                                  ".driftlab"))
    return dest


def user_env(folder: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(folder), "PYTHONDONTWRITEBYTECODE": "1", **extra}
    env.pop("DRIFTLAB_DB_URL", None)  # the local SQLite file under --home, never a shared database
    return env


def driftlab_run(folder: Path, experiment: str, **extra_env: str) -> tuple[subprocess.CompletedProcess, dict]:
    home = folder.parent / "home"
    proc = subprocess.run([sys.executable, "-m", "driftlab", "run", experiment, "--home", str(home)], cwd=folder,
                          env=user_env(folder, **extra_env), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    reports = sorted(home.glob("reports/default/*/report.json"))
    assert reports, f"no report.json under {home}\n{proc.stdout[-2000:]}"
    return proc, json.loads(reports[-1].read_text())


def non_finite(node, where: str = "") -> list[str]:
    """Paths of every float in ``node`` that is NaN or infinite (None is allowed: "not measured")."""
    if isinstance(node, float):
        return [] if math.isfinite(node) else [f"{where} = {node}"]
    if isinstance(node, dict):
        return [bad for k, v in node.items() for bad in non_finite(v, f"{where}.{k}")]
    if isinstance(node, list):
        return [bad for i, v in enumerate(node) for bad in non_finite(v, f"{where}[{i}]")]
    return []


def assert_complete(result: dict) -> None:
    counts = result["counts"]
    assert counts["planned"] > 0 and counts["ok"] == counts["planned"] and counts["failed"] == 0, counts
    assert result["gate"]["status"] == "PASS", result["gate"]
    bad = [b for key in ("summary", "sources", "hardware") for b in non_finite(result[key], key)]
    assert not bad, bad
    assert result["hardware"]["cpu-sse41"]["compared"], "the SSE4.1 profile was compared with the reference"


def test_classic_regression_without_an_input_layer(gallery):
    _, result = driftlab_run(gallery, "classic-regression.yaml")
    assert_complete(result)
    assert result["metric"]["name"] == "rmse"
    assert result["tuning"]["source"]["kind"] == "driftlab" and result["tuning"]["n_complete"] == 2
    assert type(result["tuning"]["best_params"]["units"]) is int


def test_image_cnn_on_npz_images(gallery):
    proc, result = driftlab_run(gallery, "image-cnn.yaml")
    assert_complete(result)
    assert "task: classification (inferred: target array 'y' has 10 distinct whole-number values" in proc.stdout
    assert result["metric"]["name"] == "accuracy" and result["metric"]["mean"] > 0.8, result["metric"]


def test_csv_binary_with_text_labels_and_inferred_task(gallery):
    proc, result = driftlab_run(gallery, "csv-binary.yaml")
    assert_complete(result)
    assert "task: classification (inferred: target 'diagnosis' holds text labels (2 distinct" in proc.stdout
    assert result["experiment"]["task"] == "classification"
    assert result["metric"]["mean"] > 0.85, result["metric"]  # two real classes, not a constant guess
    assert set(result["tuning"]["best_params"]) == {"units", "dropout", "learning_rate", "activation"}


def study_trials(db: Path) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT number, state FROM trials ORDER BY number").fetchall()


def test_existing_study_is_retrained_and_left_untouched(gallery):
    db = gallery.parent / "user-study.db"
    storage = f"sqlite:///{db}"
    made = subprocess.run([sys.executable, "make_study.py", "--storage", storage], cwd=gallery,
                          env=user_env(gallery), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    assert f"export OPTUNA_STORAGE={storage}" in made.stdout

    import optuna

    rdb = optuna.storages.RDBStorage(storage, skip_table_creation=True)
    best = optuna.load_study(study_name="user-study", storage=rdb).best_trial
    best_trial, best_params = best.number, best.params
    rdb.engine.dispose()
    before_trials, before_bytes = study_trials(db), hashlib.sha256(db.read_bytes()).hexdigest()
    assert len(before_trials) == 4

    _, result = driftlab_run(gallery, "existing-study.yaml", OPTUNA_STORAGE=storage)
    assert_complete(result)
    tuning = result["tuning"]
    assert tuning["source"]["kind"] == "existing-study", tuning["source"]
    assert tuning["source"]["study"] == "user-study" and tuning["source"]["trial"] == best_trial, tuning["source"]
    assert tuning["best_params"] == best_params and tuning["n_complete"] == 4
    assert study_trials(db) == before_trials, "driftlab added or changed trials in the user's study"
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before_bytes, "the study database was written"
