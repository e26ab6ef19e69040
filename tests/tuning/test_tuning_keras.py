"""The tune stage with its real objective: Keras training runs as trials, in PostgreSQL."""

from __future__ import annotations

import pytest

import os
import subprocess
import sys

from driftlab import stages, tuning

pytestmark = [pytest.mark.db, pytest.mark.slow]

#: Validation accuracy is a fraction.
ACCURACY_RANGE = (0.0, 1.0)


def _tune_task(config_file, campaign: str, worker: int) -> int:
    """stages.tune in its own process, as each pipeline task runs (profile knobs precede TensorFlow)."""
    code = ("import sys; from driftlab import stages; "
            "print(stages.tune(open(sys.argv[1]).read(), sys.argv[2], int(sys.argv[3])))")
    done = subprocess.run([sys.executable, "-c", code, str(config_file), campaign, str(worker)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.strip().splitlines()[-1])


def test_keras_trials_meet_the_budget_and_a_rerun_resumes(tiny_config_text, pg_url, monkeypatch, tmp_path):
    monkeypatch.setenv("DRIFTLAB_DB_URL", pg_url)
    monkeypatch.setenv("DRIFTLAB_HOME", str(tmp_path / "home"))
    text = tiny_config_text.replace("tuning: {trials: 2, workers: 2, seed: 0}",
                                    "tuning: {trials: 3, workers: 2, seed: 0, pruner: median}")
    assert "pruner: median" in text
    config = stages.load(text)
    tuning.create_study(config, "keras")
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(text)

    assert _tune_task(config_file, "keras", 0) == 3
    summary = tuning.best(config, "keras")
    assert summary["n_complete"] + summary["n_pruned"] == 3 and summary["n_failed"] == 0
    assert ACCURACY_RANGE[0] <= summary["best_value"] <= ACCURACY_RANGE[1]
    assert set(summary["best_params"]) == {"learning_rate"}
    best_row = next(r for r in summary["trials"] if r["number"] == summary["best_trial"])
    assert best_row["last_step"] == config.model.epochs - 1  # reported every epoch

    tuning.create_study(config, "keras")  # the pipeline again, same campaign
    assert _tune_task(config_file, "keras", 1) == 0
    assert tuning.best(config, "keras")["best_trial"] == summary["best_trial"]
