"""The regression noise floor: delta-method SE of the RMSE and the SE of the MAE against a bootstrap over rows."""

from __future__ import annotations

import numpy as np
import pytest

from driftlab.config import ExperimentConfig
from driftlab.drift import analyze
from driftlab.drift.floors import regression_floor, se_mae, se_rmse
from driftlab.drift.runs import from_record
from support.synthetic import SyntheticPlan, generate

N_ROWS = 2000
N_BOOT = 4000
TOLERANCE = 0.10  # relative: the bootstrap SD itself is uncertain by ~1/sqrt(2·N_BOOT) ≈ 1.1%, plus delta-method error


def bootstrap_sd(errors: np.ndarray, stat, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(errors), size=(N_BOOT, len(errors)))
    return float(np.std(stat(errors[idx]), ddof=1))


@pytest.mark.parametrize("kind", ["normal", "student_t5", "skewed"])
def test_floor_matches_a_bootstrap_over_rows(kind):
    rng = np.random.default_rng(7)
    e = {"normal": lambda: rng.normal(0.1, 0.5, N_ROWS), "student_t5": lambda: rng.standard_t(5, N_ROWS) * 0.3,
         "skewed": lambda: rng.exponential(0.4, N_ROWS) - 0.2}[kind]()
    boot_rmse = bootstrap_sd(e, lambda x: np.sqrt(np.mean(x ** 2, axis=1)))
    boot_mae = bootstrap_sd(e, lambda x: np.mean(np.abs(x), axis=1))
    assert se_rmse(e[:, None]) == pytest.approx(boot_rmse, rel=TOLERANCE)
    assert se_mae(e[:, None]) == pytest.approx(boot_mae, rel=TOLERANCE)


def test_floor_formulas_by_hand():
    e = np.array([1.0, -1.0, 2.0, 0.0])
    sq = e ** 2
    rmse = np.sqrt(sq.mean())
    assert se_rmse(e) == pytest.approx(np.std(sq, ddof=1) / (2 * rmse * 2))
    assert se_mae(e) == pytest.approx(np.std(np.abs(e), ddof=1) / 2)
    assert se_rmse(np.zeros(5)) == 0.0 and se_rmse(np.ones(1)) is None


def test_analyze_sets_the_regression_floor_like_the_accuracy_floor():
    plan = SyntheticPlan(task="regression", profiles=("ref", "b"), n_eval=400,
                         sigmas={"init": 0.02, "hardware": 0.01})
    records = generate(plan)
    cfg = ExperimentConfig.model_validate({"name": "syn", "dataset": {"name": "synthetic-regression"},
                                           "profiles": {"auto": True}})
    res = analyze(records, cfg, reference="ref")
    runs = [from_record(r, "regression") for r in records]
    ref = [r for r in runs if r.profile == "ref"]
    # Synthetic residuals are N(0, 0.1): SE(RMSE) ≈ 0.1·sqrt(2)/(2·sqrt(n)) for normal errors.
    assert res["metric"]["noise_floor"] == pytest.approx(regression_floor(ref, "rmse"))
    assert res["metric"]["noise_floor"] == pytest.approx(0.1 * np.sqrt(2) / (2 * np.sqrt(400)), rel=0.15)
    init = res["sources"]["init"]
    assert init["noise_floor"] > 0 and init["sd_to_noise_floor"] == pytest.approx(init["metric_sd"] / init["noise_floor"])
    b = res["hardware"]["b"]
    assert b["noise_floor"] > 0 and b["drift_to_noise_floor"] == pytest.approx(b["drift_sd"] / b["noise_floor"])
    assert regression_floor(ref, "r2") is None
