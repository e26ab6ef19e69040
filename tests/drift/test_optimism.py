"""The tuner's optimism: known answers on synthetic records, both verdicts, and reports that show the JSON's numbers."""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats as sps

from driftlab.config import ExperimentConfig
from driftlab.drift import analyze
from driftlab.drift.optimism import attach, optimism
from driftlab.report import fmt, write_all
from support.synthetic import SyntheticPlan, generate

SIGMA = 0.004
# 4 init × 4 split levels, exact effects: the 16 cell values have mean BASE and SD sigma·sqrt(1.6)
# (sum over cells of (a_i + c_p)^2 = 4·3σ² + 4·3σ², divided by 15).
PLAN = dict(init=(0, 1, 2, 3), shuffle=(0,), split=(0, 1, 2, 3), repeats=2, deterministic=(True,),
            sigmas={"init": SIGMA, "split": SIGMA}, exact=True)
SD = SIGMA * math.sqrt(1.6)


def _tuning(best: float, second: float, direction: str = "maximize") -> dict:
    return {"best_value": best, "best_trial": 7, "direction": direction, "top_k_values": [best, second],
            "stability": {"k": 2, "best_minus_second": abs(best - second)}, "source": {"kind": "driftlab"}}


def test_optimistic_tuned_value_and_a_pick_that_is_noise():
    records = generate(SyntheticPlan(base=0.98, **PLAN))
    o = optimism(records, _tuning(0.9912, 0.9884), reference="ref", metric="accuracy")
    r = o["retrained"]
    assert (r["n_levels"], r["n_runs"], r["levels"]) == (16, 32, {"init": 4, "shuffle": 1, "split": 4})
    assert r["mean"] == pytest.approx(0.98, abs=1e-12)
    assert r["sd"] == pytest.approx(SD, rel=1e-9)
    assert o["gap"] == pytest.approx(0.0112, abs=1e-12)
    assert o["gap_z"] == pytest.approx(0.0112 / SD, rel=1e-9)
    half = sps.t.ppf(0.975, 15) * SD / 4
    assert o["gap_ci95"] == pytest.approx([0.0112 - half, 0.0112 + half], rel=1e-9)
    assert o["verdict"] == "optimistic"
    p = o["pick"]
    assert p["noise_sd"] == pytest.approx(math.sqrt(2) * SD, rel=1e-9)
    assert p["z"] == pytest.approx(0.0028 / (math.sqrt(2) * SD), rel=1e-6)
    assert p["distinguishable"] is False
    first, second = o["sentences"]
    assert "Tuned val_accuracy 0.9912 (trial 7)" in first and "0.9800 ± 0.0051" in first
    assert "optimistic by 2.2 SD" in first and "16 seed points, 32 runs" in first
    assert second.startswith("The best and second-best trials differ by 0.0028, less than seed noise (SD 0.0051")
    assert second.endswith("the tuner's pick among them is noise.")


def test_consistent_tuned_value_and_a_winner_that_stands_out():
    records = generate(SyntheticPlan(base=0.98, **PLAN))
    o = optimism(records, _tuning(0.9805, 0.9605), reference="ref", metric="accuracy")
    assert o["gap"] == pytest.approx(0.0005, abs=1e-12)
    assert o["gap_ci95"][0] < 0 < o["gap_ci95"][1]
    assert o["verdict"] == "consistent"
    assert o["pick"]["z"] == pytest.approx(0.02 / (math.sqrt(2) * SD), rel=1e-6)
    assert o["pick"]["distinguishable"] is True
    assert "within what retraining gives" in o["sentences"][0]
    assert "the best trial stands out from the runner-up" in o["sentences"][1]


def test_minimized_metric_counts_a_lower_tuned_value_as_optimistic():
    records = generate(SyntheticPlan(task="regression", base=0.5, **PLAN))
    o = optimism(records, _tuning(0.48, 0.481, "minimize"), reference="ref", metric="rmse")
    assert o["metric"] == "val_rmse" and o["direction"] == "minimize"
    assert o["gap"] == pytest.approx(0.02, abs=1e-12)
    assert o["verdict"] == "optimistic"


def test_no_tuning_no_block_and_too_few_levels_says_so():
    records = generate(SyntheticPlan(base=0.98, **PLAN))
    assert optimism(records, None, reference="ref", metric="accuracy") is None
    assert optimism(records, {"best_value": None}, reference="ref", metric="accuracy") is None
    one = [r for r in records if (r["init_seed"], r["split_seed"]) == (0, 0)]
    o = optimism(one, _tuning(0.99, 0.98), reference="ref", metric="accuracy")
    assert o["verdict"] is None and "at least 2" in o["note"] and "not measured" in o["sentences"][0]


def test_reports_show_the_json_numbers_rounded_never_raw_json(tmp_path):
    records = generate(SyntheticPlan(base=0.98, **PLAN))
    cfg = ExperimentConfig.model_validate({"name": "syn", "dataset": {"name": "digits"}, "profiles": {"auto": True}})
    res = analyze(records, cfg, reference="ref")
    res["experiment"] = {"name": "syn", "campaign": "c1", "task": "classification"}
    res["tuning"] = _tuning(0.9912, 0.9884)
    attach(res, records)
    write_all(res, tmp_path)
    body = json.loads((tmp_path / "report.json").read_text())
    o = body["optimism"]
    assert o["sentences"][0] in body["summary"] and o["sentences"][1] in body["summary"]
    md = (tmp_path / "report.md").read_text().split("## Tuner's optimism", 1)[1]
    html = (tmp_path / "report.html").read_text().split("<h2>Tuner&#x27;s optimism</h2>", 1)[1]
    shown = [fmt.num(o["tuned_value"]), fmt.num(o["retrained"]["mean"]), fmt.num(o["retrained"]["sd"]),
             fmt.num(o["gap"]), fmt.ci(o["gap_ci95"]), f"{o['gap_z']:.2f}", fmt.num(o["pick"]["best_minus_second"]),
             fmt.num(o["pick"]["noise_sd"]), f"{o['pick']['z']:.2f}", "optimistic", "noise"]
    for text in shown:
        assert text in md, text
        assert text in html, text
    for section in (md, html):
        assert "{" not in section and "0.0112000" not in section  # no raw JSON, floats rounded
    assert "<svg" in html.split("<h2>", 1)[0] and "Tuned value vs retraining" in html, "the section has its plot"
