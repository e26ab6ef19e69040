"""analyze() end to end on synthetic records: known answers, degenerate plans, the gate."""

from __future__ import annotations

import json
import math

import pytest

from driftlab.config import ExperimentConfig
from driftlab.drift import RecordError, analyze, headline_metrics
from support.synthetic import SyntheticPlan, generate

EXACT_REL = 1e-9
SQRT2 = math.sqrt(2)


def config(task: str = "classification", **tolerances) -> ExperimentConfig:
    dataset = {"name": "digits"} if task == "classification" else {"name": "synthetic-regression"}
    return ExperimentConfig.model_validate({"name": "syn", "dataset": dataset, "profiles": {"auto": True},
                                            "tolerances": tolerances})


def finite_everywhere(value) -> bool:
    """No NaN or inf anywhere in the (JSON-ready) result."""
    text = json.dumps(value, default=str)
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the report"))
    return True


def known_plan(**overrides) -> SyntheticPlan:
    base = dict(init=(0, 1), shuffle=(0, 1), split=(0, 1), profiles=("ref", "b"), exact=True, n_eval=100,
                sigmas={"init": 0.02, "shuffle": 0.02, "split": 0.02, "hardware": 0.01, "nondeterminism": 0.004})
    base.update(overrides)
    return SyntheticPlan(**base)


def test_factorial_classification_known_answers():
    res = analyze(generate(known_plan()), config(), reference="ref")
    assert finite_everywhere(res)
    for source in ("init", "shuffle", "split"):
        assert res["sources"][source]["metric_sd"] == pytest.approx(0.02, rel=EXACT_REL)
        p = res["sources"][source]["metric_mean"]  # 0.9 shifted by the reference's hardware effect
        assert p == pytest.approx(0.9, abs=0.01)
        assert res["sources"][source]["noise_floor"] == pytest.approx(math.sqrt(p * (1 - p) / 100), rel=EXACT_REL)
    assert res["sources"]["nondeterminism"]["metric_sd"] == pytest.approx(0.004, rel=EXACT_REL)
    assert res["seed_noise"]["sd"] == pytest.approx(0.02, rel=EXACT_REL)
    hw = res["hardware"]["b"]
    # Two profiles with sample variance 0.01^2 sit 0.01*sqrt(2) apart: drift SD 0.01 = 0.5x seed noise.
    assert hw["metric_delta_max_abs"] == pytest.approx(0.01 * SQRT2, rel=EXACT_REL)
    assert hw["drift_sd"] == pytest.approx(0.01, rel=EXACT_REL)
    assert hw["drift_to_seed_noise"] == pytest.approx(0.5, rel=EXACT_REL)
    assert hw["identical_share"] == 0.0 and 0 < hw["disagreement"] < 0.2
    det = res["determinism"]
    assert det["verdict"] == "removes" and det["repeats_on"]["identical_share"] == 1.0
    assert det["fit_time_ratio_on_off"] == pytest.approx(1.3, rel=EXACT_REL)
    assert res["metric"]["noise_floor"] is not None


def test_print_summary_keys_are_kept():
    res = analyze(generate(known_plan()), config(), reference="ref")
    assert {"name", "n_eval"} <= set(res["metric"])
    for s in res["sources"].values():
        assert s["varied"] and {"metric_sd", "disagreement", "identical_share"} <= set(s)
    for h in res["hardware"].values():
        assert {"compared", "metric_delta_mean", "disagreement", "identical_share", "drift_to_seed_noise"} <= set(h)
    assert res["summary"] and res["gate"]["status"] in ("PASS", "FAIL") and res["reference"] == "ref"


def test_single_level_sources_say_not_varied_and_never_nan():
    plan = SyntheticPlan(init=(0,), shuffle=(0,), split=(0,), repeats=1, deterministic=(True,),
                         profiles=("ref",), n_eval=50)
    res = analyze(generate(plan), config(max_drift_ratio=1.0, max_metric_sd=0.01), reference="ref")
    assert finite_everywhere(res)
    for name, s in res["sources"].items():
        assert s["varied"] is False and s["note"].startswith("not varied"), name
    assert res["variance"]["shares"] == {} and res["hardware"] == {}
    assert res["seed_noise"]["sd"] is None
    assert any("nothing to compare" in line for line in res["summary"])
    assert all(math.isfinite(v) for v in headline_metrics(res).values())
    assert res["gate"]["status"] == "PASS" and res["gate"]["checks"] == []


def test_regression_uses_rms_difference_and_the_delta_method_floor():
    plan = known_plan(task="regression", profiles=("ref", "b"))
    res = analyze(generate(plan), config("regression"), reference="ref")
    # Not the binomial floor: the SE of the RMSE on the eval rows (driftlab.drift.floors; tested there).
    assert res["metric"]["name"] == "rmse" and 0 < res["metric"]["noise_floor"] < 0.05
    assert set(res["metric"]["all"]) == {"rmse", "mae"}
    init = res["sources"]["init"]
    assert init["disagreement"] == init["rms_diff"] > 0 and init["noise_floor"] > 0
    assert init["sd_to_noise_floor"] == pytest.approx(init["metric_sd"] / init["noise_floor"])
    assert init["metrics"]["mae"]["sd"] == pytest.approx(0.8 * 0.02, rel=EXACT_REL)  # mae = 0.8 * rmse
    assert res["hardware"]["b"]["metric_deltas"]["mae"]["max_abs"] == pytest.approx(0.8 * 0.01 * SQRT2,
                                                                                     rel=EXACT_REL)
    assert finite_everywhere(res)


def test_gate_per_profile_budgets_override_global_ones():
    records = generate(known_plan(profiles=("ref", "b", "c")))
    cfg = config(max_drift_ratio=0.4, min_identical_share=0.0,
                 per_profile={"b": {"max_drift_ratio": 10.0}}, max_delta_by_metric={"accuracy": 1.0})
    res = analyze(records, cfg, reference="ref")
    ratio_checks = {c["where"]: c for c in res["gate"]["checks"] if c["check"] == "drift_ratio"}
    assert ratio_checks["b"]["status"] == "PASS" and ratio_checks["b"]["budget_from"] == "per_profile"
    c_ratio = res["hardware"]["c"]["drift_to_seed_noise"]
    assert ratio_checks["c"]["status"] == ("FAIL" if c_ratio > 0.4 else "PASS")
    assert ratio_checks["c"]["budget_from"] == "global"
    assert {c["check"] for c in res["gate"]["checks"]} >= {"identical_share", "metric_delta:accuracy"}
    strict = analyze(records, config(max_drift_ratio=0.0), reference="ref")
    assert strict["gate"]["status"] == "FAIL" and strict["gate"]["failed"] == 2
    assert any(line.startswith("Tolerance gate: FAIL") for line in strict["summary"])


def test_gate_marks_undefined_values_na_and_missing_comparisons_incomplete():
    # Seeds not varied: seed noise unknown, so drift / seed noise is N/A (not a failure).
    plan = SyntheticPlan(init=(0,), shuffle=(0,), split=(0,), repeats=1, deterministic=(True,),
                         profiles=("ref", "b", "z"), sigmas={"hardware": 0.01}, n_eval=50)
    records = generate(plan)
    for r in records:
        if r["profile"] == "z":
            r["init_seed"] = 99  # no run shares its seeds with the reference
    res = analyze(records, config(max_drift_ratio=1.0), reference="ref")
    checks = {(c["check"], c["where"]): c for c in res["gate"]["checks"]}
    assert checks[("drift_ratio", "b")]["status"] == "N/A"
    assert checks[("compared", "z")]["status"] == "INCOMPLETE", "no comparison is a measurement not made"
    assert res["gate"]["status"] == "INCOMPLETE"


def test_failed_runs_are_counted_not_compared_and_bad_records_named():
    records = generate(known_plan())
    records.append({**records[0], "key": "broken", "status": "failed", "predictions": None})
    records.append({**records[1], "key": "nan", "status": "diverged"})
    res = analyze(records, config(), reference="ref")
    assert res["counts"]["failed"] == 1 and res["counts"]["diverged"] == 1
    assert res["counts"]["ok"] == len(records) - 2
    assert res["summary"][0].startswith(f"1 of {len(records)} runs failed: 1× unknown error"), res["summary"][0]
    with pytest.raises(RecordError, match="broken"):
        analyze([{**records[-2], "status": "ok"}], config(), reference="ref")


def test_deterministic_repeats_that_differ_are_reported_partial():
    records = generate(known_plan(profiles=("ref",)))
    first = next(r for r in records if r["deterministic"] and r["repeat"] == 1)
    first["weights_digest"] = "changed"  # one deterministic repeat not bitwise identical
    res = analyze(records, config(), reference="ref")
    assert res["determinism"]["verdict"] == "partial"
    assert res["determinism"]["repeats_on"]["identical_share"] < 1.0
