"""Small statistics against answers computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftlab.drift import stats

EXACT = 1e-12
CHI2_TABLE = 1e-4  # quantiles copied from a chi-square table to 4-5 significant digits


def test_sd_and_pooled_sd_match_hand_computation():
    assert stats.sd([1.0, 3.0]) == pytest.approx(math.sqrt(2), abs=EXACT)
    assert stats.sd([5.0]) is None
    # groups [1,3] (SS 2, df 1) and [2,4,6] (SS 8, df 2): pooled variance 10/3
    assert stats.pooled_sd([[1, 3], [2, 4, 6], [7]]) == pytest.approx(math.sqrt(10 / 3), abs=EXACT)
    assert stats.pooled_variance([[1, 3], [2, 4, 6]]) == (pytest.approx(10 / 3, abs=EXACT), 3)
    assert stats.pooled_sd([[1.0], [2.0]]) is None


def test_identical_values_give_exactly_zero_not_round_off():
    value = 0.9618596881959911
    assert stats.pooled_sd([[value, value, value], [value, value]]) == 0.0
    assert stats.bootstrap_ci([[value, value], [value, value]]) == [0.0, 0.0]


def test_chi2_interval_matches_table_values():
    # df=4: chi2_0.025 = 0.484419, chi2_0.975 = 11.1433
    lo, hi = stats.chi2_ci(1.0, 4)
    assert lo == pytest.approx(math.sqrt(4 / 11.1433), abs=CHI2_TABLE)
    assert hi == pytest.approx(math.sqrt(4 / 0.484419), abs=CHI2_TABLE)
    assert stats.chi2_ci(None, 4) is None and stats.chi2_ci(1.0, 0) is None


def test_bootstrap_ci_one_group_resamples_runs_and_brackets_the_sd():
    values = [[0.90, 0.92, 0.95, 0.91, 0.93, 0.97, 0.89, 0.94]]
    lo, hi = stats.bootstrap_ci(values)
    assert 0 < lo < stats.pooled_sd(values) < hi
    assert stats.bootstrap_ci(values) == [lo, hi]  # fixed seed: same records, same interval
    assert stats.bootstrap_ci([[1.0]]) is None


def test_cluster_bootstrap_covers_the_true_sd():
    """Coverage control: 200 simulated plans of 30 groups x 3 runs with SD 0.02."""
    true_sd, trials, covered = 0.02, 200, 0
    rng = np.random.default_rng(7)
    for _ in range(trials):
        groups = [list(rng.normal(rng.normal(0, 0.05), true_sd, 3)) for _ in range(30)]
        lo, hi = stats.bootstrap_ci(groups, n_boot=400)
        covered += lo <= true_sd <= hi
    # Nominal 95%; percentile cluster bootstrap with 30 groups runs slightly under.
    coverage_tolerance = 0.08
    assert covered / trials >= 0.95 - coverage_tolerance


def test_noise_floor_and_ratio_never_divide_by_zero():
    assert stats.noise_floor(0.9, 100) == pytest.approx(0.03, abs=EXACT)
    assert stats.noise_floor(0.9, 0) is None
    assert stats.noise_floor(None, 100) is None
    assert stats.ratio(1.0, 0.0) is None and stats.ratio(None, 1.0) is None
    assert stats.ratio(1.0, 4.0) == 0.25
