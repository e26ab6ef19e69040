"""Variance components: known answers, by hand, exactly, and on average over random draws."""

from __future__ import annotations

import numpy as np
import pytest

from driftlab.config import ExperimentConfig
from driftlab.drift import analyze
from driftlab.drift.anova import anova_batch, anova_components
from support.synthetic import SyntheticPlan, generate

EXACT_REL = 1e-9  # float round-off only
UNBIASED_SE = 3  # mean of 400 estimates vs truth within 3 standard errors of that mean (SE from the draws)
SIGMAS = {"init": 0.03, "shuffle": 0.02, "split": 0.01, "hardware": 0.015, "init×shuffle": 0.01,
          "nondeterminism": 0.005}


def config(**tolerances) -> ExperimentConfig:
    return ExperimentConfig.model_validate({"name": "syn", "dataset": {"name": "digits"},
                                            "profiles": {"auto": True}, "tolerances": tolerances})


def test_one_way_anova_by_hand():
    # Two levels x two repeats: [1, 3] and [5, 7]. MS_between = 2*((2-4)^2+(6-4)^2)/1 = 16,
    # MS_within = (1+1+1+1)/2 = 2, sigma2_A = (16 - 2) / 2 = 7.
    res = anova_components(np.array([[1.0, 3.0], [5.0, 7.0]]), ["init"])
    assert res["terms"][0]["mean_square"] == pytest.approx(16.0, rel=EXACT_REL)
    assert res["residual"]["variance"] == pytest.approx(2.0, rel=EXACT_REL)
    assert res["terms"][0]["variance"] == pytest.approx(7.0, rel=EXACT_REL)


def test_a_batch_of_tables_gives_each_tables_own_components():
    rng = np.random.default_rng(5)
    tables = rng.normal(size=(7, 4, 3, 2, 3)) * rng.random((7, 1, 1, 1, 1))
    tables[3] = 1.0  # a constant table: every component is zero
    names = ["init", "shuffle", "split"]
    batch = anova_batch(tables, names)
    for b, y in enumerate(tables):
        one = anova_components(y, names)
        for tb, t1 in zip(batch["terms"], one["terms"]):
            assert tb["name"] == t1["name"] and tb["df"] == t1["df"]
            for field in ("mean_square", "variance_raw", "variance"):
                assert tb[field][b] == pytest.approx(t1[field], rel=EXACT_REL, abs=1e-15)
        assert batch["residual"]["variance"][b] == pytest.approx(one["residual"]["variance"], rel=EXACT_REL)
    assert all(t["variance"][3] == 0.0 for t in batch["terms"]) and batch["residual"]["variance"][3] == 0.0
    assert any(t["variance"][0] > 0 for t in batch["terms"]), "control: a random table has components"


def test_negative_estimates_are_kept_raw_and_truncated_for_shares():
    # Between-level spread smaller than within: raw component negative.
    res = anova_components(np.array([[0.0, 2.0], [0.1, 2.1]]), ["init"])
    assert res["terms"][0]["variance_raw"] < 0
    assert res["terms"][0]["variance"] == 0.0


def test_estimator_is_unbiased_with_interactions_and_residual():
    rng = np.random.default_rng(11)
    levels, r = (6, 5, 4), 2
    truth = {"init": 1.0, "shuffle": 0.5, "split": 0.25, "init×shuffle": 0.3, "residual": 0.2}
    estimates = {k: [] for k in truth}
    n = 400
    for _ in range(n):
        y = (rng.normal(0, 1.0, (levels[0], 1, 1, 1)) + rng.normal(0, np.sqrt(0.5), (1, levels[1], 1, 1))
             + rng.normal(0, 0.5, (1, 1, levels[2], 1)) + rng.normal(0, np.sqrt(0.3), (levels[0], levels[1], 1, 1))
             + rng.normal(0, np.sqrt(0.2), levels + (r,)))
        res = anova_components(y, ["init", "shuffle", "split"])
        by_name = {t["name"]: t["variance_raw"] for t in res["terms"]}
        for k in truth:
            estimates[k].append(res["residual"]["variance"] if k == "residual" else by_name[k])
    for k, v in truth.items():
        est = np.asarray(estimates[k])
        # UNBIASED_SE standard errors of the mean of n estimates, the SE taken from the simulation itself.
        tolerance = UNBIASED_SE * est.std(ddof=1) / np.sqrt(n)
        assert abs(est.mean() - v) <= tolerance, (k, est.mean(), tolerance)


def test_synthetic_records_recover_their_variance_components_exactly():
    plan = SyntheticPlan(init=(0, 1, 2), shuffle=(0, 1, 2, 3), split=(0, 1), profiles=("ref", "b", "c"),
                         sigmas=SIGMAS, exact=True, n_eval=20)
    var = analyze(generate(plan), config(), reference="ref")["variance"]
    assert var["design"] == "factorial"
    expected = {"init": 0.03 ** 2, "shuffle": 0.02 ** 2, "split": 0.01 ** 2, "hardware": 0.015 ** 2,
                "interactions": 0.01 ** 2, "nondeterminism": 0.005 ** 2, "residual": 0.0}
    for name, value in expected.items():
        assert var["variances"][name] == pytest.approx(value, rel=EXACT_REL, abs=1e-15), name
    # split has 2 levels: no share (not estimable), though its variance stays in the total.
    assert var["shares"]["split"] is None and "not estimable from 2 levels" in var["share_notes"]["split"]
    stated = sum(v for v in var["shares"].values() if v is not None)
    assert stated == pytest.approx(1.0 - 0.01 ** 2 / sum(expected.values()), rel=EXACT_REL)
    assert var["shares"]["init"] == pytest.approx(0.03 ** 2 / sum(expected.values()), rel=EXACT_REL)


def test_random_synthetic_records_recover_components_within_sampling_error():
    """Effects drawn at random (not rescaled): estimates land within 3 standard errors."""
    plan = SyntheticPlan(init=tuple(range(12)), shuffle=tuple(range(10)), split=(0, 1), repeats=2,
                         profiles=("ref",), sigmas={"init": 0.03, "shuffle": 0.01, "nondeterminism": 0.005},
                         n_eval=10, n_classes=2, seed=5)
    var = analyze(generate(plan), config(), reference="ref")["variance"]
    # SE of a variance estimated from L levels is about sigma^2 * sqrt(2 / (L - 1)).
    for name, sigma, levels in (("init", 0.03, 12), ("shuffle", 0.01, 10)):
        tolerance = 3 * sigma ** 2 * np.sqrt(2 / (levels - 1))
        assert abs(var["variances"][name] - sigma ** 2) <= tolerance, name
    # Nondeterminism has 240 cells x 1 df each: SE about 9% of its variance.
    assert var["variances"]["nondeterminism"] == pytest.approx(0.005 ** 2, rel=3 * np.sqrt(2 / 240))


def test_one_at_a_time_plan_uses_per_source_variances():
    plan = SyntheticPlan(design="one-at-a-time", init=(0, 1, 2, 3), shuffle=(0, 1, 2), split=(0,),
                         sigmas={"init": 0.02, "shuffle": 0.01}, exact=True, n_eval=10)
    res = analyze(generate(plan), config(), reference="ref")
    var = res["variance"]
    assert var["design"] == "one-at-a-time" and "interactions cannot be separated" in var["method"]
    assert var["variances"]["init"] == pytest.approx(0.02 ** 2, rel=EXACT_REL)
    assert var["variances"]["shuffle"] == pytest.approx(0.01 ** 2, rel=EXACT_REL)
    assert "split" not in var["variances"]  # one split seed: not varied, not a zero share
