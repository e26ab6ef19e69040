"""The tuning summary select-best hands to later tasks stays under its share of a task argument, whatever the study.

With 5,000 trials and ``top_k: 1000`` the top-k table alone would take far more than the
128 KiB Linux allows one argument; the summary that travels keeps the rows that fit
(``contracts.MAX_TUNING_TEXT``), at least those retrain-top-k needs, and says how many it left
out. The trial table never travels.
"""

from __future__ import annotations

import json
import random

import optuna
import pytest

from driftlab.contracts import (MAX_TUNING_TEXT, MIN_TOP_K_ROWS, TooLargeForTask, bounded_tuning_summary,
                                escaped_size)
from driftlab.tuning.results import summarize

CONFIG = """\
name: big-study
dataset: {name: digits}
search_space:
  units: {type: int, low: 16, high: 96}
  learning_rate: {type: float, low: 0.0005, high: 0.01, log: true}
  dropout: {type: float, low: 0.0, high: 0.3}
  activation: {type: categorical, choices: [relu, tanh, gelu]}
tuning: {trials: 5000, workers: 2, top_k: 1000, retrain_top_k: 10}
profiles: {pools: [{name: cpu-default}]}
"""
DISTRIBUTIONS = {"units": optuna.distributions.IntDistribution(16, 96),
                 "learning_rate": optuna.distributions.FloatDistribution(0.0005, 0.01, log=True),
                 "dropout": optuna.distributions.FloatDistribution(0.0, 0.3),
                 "activation": optuna.distributions.CategoricalDistribution(["relu", "tanh", "gelu"])}


def trials(n: int, seed: int = 0) -> list[optuna.trial.FrozenTrial]:
    rng = random.Random(seed)
    out = []
    for number in range(n):
        params = {"units": rng.randint(16, 96), "learning_rate": rng.uniform(0.0005, 0.01),
                  "dropout": rng.uniform(0.0, 0.3), "activation": rng.choice(["relu", "tanh", "gelu"])}
        trial = optuna.trial.create_trial(params=params, distributions=DISTRIBUTIONS, value=rng.random())
        trial.number = number
        out.append(trial)
    return out


def test_a_5000_trial_study_summary_stays_under_its_share():
    summary = summarize("driftlab.big-study.default", trials(5000), direction="maximize", top_k=1000)
    whole = json.dumps({k: v for k, v in summary.items() if k != "trials"}, sort_keys=True)
    assert escaped_size(whole) > 10 * MAX_TUNING_TEXT, "control: uncut, the top-k table is far too large"
    text = bounded_tuning_summary(summary, keep=10)
    assert escaped_size(text) <= MAX_TUNING_TEXT == 12 * 1024
    cut = json.loads(text)
    kept = len(cut["top_k_values"])
    assert 10 <= kept < 1000 and len(cut["top_k_params"]) == len(cut["top_k_trials"]) == kept
    assert cut["top_k_left_out"] == 1000 - kept and "trials" not in cut
    assert cut["top_k_params"][:kept] == summary["top_k_params"][:kept], "the best rows are the ones kept"
    assert cut["stability"] == summary["stability"] and cut["stability"]["k"] == 1000, "figures over all top-k"
    assert cut["best_params"] == summary["best_params"] and cut["n_complete"] == 5000


def test_a_summary_that_fits_travels_whole():
    summary = summarize("driftlab.small.default", trials(20), direction="maximize", top_k=5)
    cut = json.loads(bounded_tuning_summary(summary, keep=1))
    assert "top_k_left_out" not in cut and len(cut["top_k_values"]) == 5 and "trials" not in cut


def test_rows_that_must_stay_and_do_not_fit_are_refused():
    summary = summarize("s", trials(50), direction="maximize", top_k=20)
    for row in summary["top_k_params"]:
        row["notes"] = "x" * 2000  # a long categorical choice, in every row
    with pytest.raises(TooLargeForTask, match=r"^tuning: .* even with only 10 top-k row\(s\)"):
        bounded_tuning_summary(summary, keep=10)
    assert len(json.loads(bounded_tuning_summary(summary, keep=MIN_TOP_K_ROWS))["top_k_values"]) >= MIN_TOP_K_ROWS


def test_the_report_says_how_many_rows_were_left_out():
    from driftlab.report.tuning import tuning_view

    summary = json.loads(bounded_tuning_summary(summarize("s", trials(5000), direction="maximize", top_k=1000),
                                                keep=2))
    view = tuning_view(summary)
    kept = len(summary["top_k_values"])
    assert view.top_title.startswith(f"Top {kept} of 1000 trials") and len(view.top) == kept


@pytest.mark.slow
def test_select_best_on_a_real_5000_trial_study_hands_on_a_bounded_summary(tmp_path, monkeypatch):
    from driftlab import stages
    from driftlab.config import load_config_text
    from driftlab.tuning.storage import storage_for
    from driftlab.tuning.study import study_name

    monkeypatch.setenv("DRIFTLAB_HOME", str(tmp_path))
    monkeypatch.delenv("DRIFTLAB_DB_URL", raising=False)
    config = load_config_text(CONFIG)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name(config, "c"), storage=storage_for(config),
                                direction="maximize")
    study.add_trials(trials(5000))  # a journal file under DRIFTLAB_HOME, as `driftlab run` keeps it
    best_params, tuning = stages.select_best_for_kfp(CONFIG, "c", [2500, 2500])
    assert escaped_size(tuning) <= MAX_TUNING_TEXT
    cut = json.loads(tuning)
    assert cut["n_complete"] == 5000 and cut["top_k_left_out"] == 1000 - len(cut["top_k_values"]) > 0
    assert len(cut["top_k_params"]) >= config.tuning.retrain_top_k
    assert json.loads(best_params)["values"] == cut["best_params"]
