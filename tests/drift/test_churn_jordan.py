"""Per-example churn and Jordan's check: known answers on hand-made runs, and agreement with the pair statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftlab.config import ExperimentConfig
from driftlab.drift import analyze
from driftlab.drift.churn import TOP_UNSTABLE, churn, jordan
from driftlab.drift.runs import Run
from support.synthetic import SyntheticPlan, generate


def config(task: str = "classification") -> ExperimentConfig:
    dataset = {"name": "digits"} if task == "classification" else {"name": "synthetic-regression"}
    return ExperimentConfig.model_validate({"name": "syn", "dataset": dataset, "profiles": {"auto": True}})


def run(labels, truth, i=0, predictions=None) -> Run:
    labels = np.asarray(labels)
    pred = np.eye(max(int(labels.max()), int(np.max(truth))) + 1)[labels] if predictions is None else predictions
    return Run(key=f"r{i}", profile="ref", init_seed=i, shuffle_seed=0, split_seed=0, repeat=0, deterministic=True,
               metrics={}, loss=np.zeros(0), predictions=np.asarray(pred), labels=labels, weights=None,
               weights_kind=None, weights_digest=None, fit_s=None, n_eval=len(labels), truth=np.asarray(truth))


def correctness_runs(correct: np.ndarray) -> list[Run]:
    """Binary task, truth all 1: run r predicts 1 on row i exactly when correct[r, i]."""
    truth = np.ones(correct.shape[1], dtype=np.int64)
    return [run(correct[r].astype(np.int64), truth, r) for r in range(correct.shape[0])]


def test_jordan_known_answer_by_hand():
    # 3 runs, 4 rows. Accuracies 3/4, 1/4, 2/4: observed var = 1/16.
    c = np.array([[1, 1, 1, 0], [0, 0, 1, 0], [1, 0, 1, 0]], dtype=float)
    j = jordan([correctness_runs(c)])
    k, n = c.shape
    p = c.mean(axis=0)
    predicted = np.sum(p * (1 - p)) * k / (k - 1) / n ** 2
    assert j["observed_var"] == pytest.approx(1 / 16)
    assert j["predicted_var"] == pytest.approx(predicted)
    assert j["ratio"] == pytest.approx((1 / 16) / predicted) and j["df"] == 2


def test_jordan_independent_flips_give_ratio_one():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.5, 1.0, 400)
    groups = [correctness_runs(rng.random((10, 400)) < p) for _ in range(20)]  # df = 180
    j = jordan(groups)
    assert j["verdict"] == "independent" and j["ci95"][0] < 1 < j["ci95"][1]
    assert j["ratio"] == pytest.approx(1.0, abs=0.3)


def test_jordan_real_quality_differences_give_excess():
    rng = np.random.default_rng(2)
    groups = []
    for _ in range(20):
        quality = rng.normal(0, 0.08, (10, 1))  # some runs are better at every row
        groups.append(correctness_runs(rng.random((10, 400)) < np.clip(0.8 + quality, 0, 1)))
    j = jordan(groups)
    assert j["verdict"] == "excess" and j["ci95"][0] > 1


def test_jordan_no_flips_and_no_truth():
    c = np.ones((3, 5))
    assert jordan([correctness_runs(c)])["verdict"] == "no_flips"
    runs = correctness_runs(c)
    for r in runs:
        r.truth = None
    assert jordan([runs]) is None


def test_churn_counts_flips_and_ranks_rows():
    truth = np.zeros(6, dtype=np.int64)
    labels = np.array([[0, 0, 1, 2, 0, 0], [0, 0, 1, 0, 0, 1], [0, 0, 1, 1, 0, 0]])
    c = churn([[run(labels[r], np.full(6, 2), r) for r in range(3)]], "classification")
    # Row 3 has three different labels (rate 1), row 5 has one odd run (rate 2/3); rows 0,1,2,4 never flip.
    assert c["flip_share"] == pytest.approx(2 / 6)
    assert c["unstable_rows"] == [3, 5] and c["unstable_rates"] == pytest.approx([1.0, 2 / 3])
    assert sum(c["histogram"]["counts"]) == 6
    del truth


def test_churn_agrees_with_the_source_disagreement():
    res = analyze(generate(SyntheticPlan(n_eval=300, flip_rate=0.2, repeats=3)), config(), reference="ref")
    for name, c in res["churn"].items():
        assert c["flip_rate_mean"] == pytest.approx(res["sources"][name]["disagreement"], rel=1e-9)
        assert c["flip_share"] >= c["flip_rate_mean"]
        assert len(c["unstable_rows"]) == TOP_UNSTABLE and len(set(c["unstable_rows"])) == TOP_UNSTABLE
    assert "seed" in res["jordan"] and res["jordan"]["seed"]["df"] > 0
    assert any(line.startswith("Jordan's check") for line in res["summary"])
    assert any(line.startswith("Churn:") for line in res["summary"])


def test_regression_churn_is_per_row_prediction_sd():
    res = analyze(generate(SyntheticPlan(task="regression", n_eval=120)), config("regression"), reference="ref")
    assert "note" in res["jordan"]  # classification only
    for name, c in res["churn"].items():
        assert c["measure"] == "prediction_sd" and "regression" in c["note"]
        # Groups of two runs: mean per-row variance = mean squared difference / 2.
        assert c["row_sd_rms"] == pytest.approx(res["sources"][name]["rms_diff"] / math.sqrt(2), rel=1e-6)
    assert any(line.startswith("Per-row prediction SD") for line in res["summary"])


def test_pooled_seed_groups_count_each_run_once():
    from driftlab.drift.churn import independent_df

    class R:
        def __init__(self, key):
            self.key = key

    runs = {k: R(k) for k in "abcdefgh"}  # a 2×2×2 factorial: every run is in an init, shuffle and split group
    init = [("a", "b"), ("c", "d"), ("e", "f"), ("g", "h")]
    shuffle = [("a", "c"), ("b", "d"), ("e", "g"), ("f", "h")]
    split = [("a", "e"), ("b", "f"), ("c", "g"), ("d", "h")]
    groups = [[runs[x] for x in g] for g in init + shuffle + split]
    assert sum(len(g) - 1 for g in groups) == 12, "control: the naive count claims 12 df"
    assert independent_df(groups) == 7
    assert independent_df([[runs["a"], runs["b"]], [runs["c"], runs["d"]]]) == 2, "unlinked groups keep their df"
