"""Every budget of the tolerance gate can FAIL: each one alone, on synthetic records, with a looser budget as control.

The plan has a second profile whose metric moves by a known amount (exact synthetic effects):
|Δ accuracy| = 0.01·√2 on every pair, drift ÷ seed noise = 0.5, no bitwise-identical pair, some
predictions change.
"""

from __future__ import annotations

import pytest

from driftlab.config import ExperimentConfig
from driftlab.drift import analyze
from support.synthetic import SyntheticPlan, generate


def config(**tolerances) -> ExperimentConfig:
    return ExperimentConfig.model_validate({"name": "syn", "dataset": {"name": "digits"}, "profiles": {"auto": True},
                                            "tolerances": tolerances})


@pytest.fixture(scope="module")
def records():
    return generate(SyntheticPlan(profiles=("ref", "b"), exact=True, n_eval=100,
                                  sigmas={"init": 0.02, "shuffle": 0.02, "split": 0.02, "hardware": 0.01}))


# (budget field, failing value, passing value, check name, where)
CASES = [
    ("max_disagreement", 0.0, 1.0, "disagreement", "b"),
    ("max_metric_delta", 0.001, 1.0, "metric_delta", "b"),
    ("max_metric_sd", 0.001, 1.0, "metric_sd", "init"),
    ("max_prediction_diff", 1e-9, 1.0, "prediction_diff", "b"),
    ("max_drift_ratio", 0.1, 10.0, "drift_ratio", "b"),
    ("min_identical_share", 0.5, 0.0, "identical_share", "b"),
    ("max_delta_by_metric", {"accuracy": 0.001}, {"accuracy": 1.0}, "metric_delta:accuracy", "b"),
]


@pytest.mark.parametrize("field, failing, passing, check, where", CASES, ids=[c[0] for c in CASES])
def test_each_budget_fails_alone_and_passes_when_looser(records, field, failing, passing, check, where):
    bad = analyze(records, config(**{field: failing}), reference="ref")
    assert bad["gate"]["status"] == "FAIL"
    mine = [c for c in bad["gate"]["checks"] if c["check"] == check and c["where"] == where]
    assert mine and mine[0]["status"] == "FAIL", bad["gate"]["checks"]
    assert bad["gate"]["failed"] == len([c for c in bad["gate"]["checks"] if c["status"] == "FAIL"]) >= 1
    assert all(c["check"] == check for c in bad["gate"]["checks"] if c["status"] == "FAIL")  # only this budget
    assert bad["summary"][-1].startswith("Tolerance gate: FAIL")
    good = analyze(records, config(**{field: passing}), reference="ref")
    assert good["gate"]["status"] == "PASS"
    assert all(c["status"] == "PASS" for c in good["gate"]["checks"] if c["check"] == check)


def test_fail_values_are_the_measured_ones(records):
    res = analyze(records, config(max_metric_delta=0.001, max_drift_ratio=0.1), reference="ref")
    by = {c["check"]: c for c in res["gate"]["checks"]}
    assert by["metric_delta"]["value"] == pytest.approx(0.01 * 2 ** 0.5, rel=1e-9)
    assert by["drift_ratio"]["value"] == pytest.approx(0.5, rel=1e-9)
