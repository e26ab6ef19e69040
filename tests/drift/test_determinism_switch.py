"""The determinism switch (same seeds, determinism on vs off) and the "nothing to remove" verdict path."""

from __future__ import annotations

import copy

import pytest

from driftlab.config import ExperimentConfig
from driftlab.drift import analyze
from driftlab.report import to_html, to_markdown
from support.synthetic import SyntheticPlan, generate


def config() -> ExperimentConfig:
    return ExperimentConfig.model_validate({"name": "syn", "dataset": {"name": "digits"}, "profiles": {"auto": True}})


def test_switch_pairs_every_point_run_in_both_modes():
    plan = SyntheticPlan(sigmas={"init": 0.02, "nondeterminism": 0.01}, exact=True)
    records = generate(plan)
    res = analyze(records, config(), reference="ref")
    sw = res["determinism"]["switch"]
    assert sw["compared"] == 8 * plan.repeats and sw["identical"] == 0 and sw["identical_share"] == 0.0
    by = {}
    for r in records:
        by.setdefault((r["init_seed"], r["shuffle_seed"], r["split_seed"], r["repeat"]), {})[r["deterministic"]] = r
    deltas = [v[False]["metrics"]["eval_accuracy"] - v[True]["metrics"]["eval_accuracy"] for v in by.values()]
    assert sw["metric_delta_mean"] == pytest.approx(sum(deltas) / len(deltas))
    assert sw["metric_delta_max_abs"] == pytest.approx(max(abs(d) for d in deltas))
    assert sw["fit_time_ratio_on_off"] == pytest.approx(1.3) and sw["disagreement"] > 0
    assert any(line.startswith("Switching op determinism off on ref changed the weights in 16 of 16")
               for line in res["summary"])
    md = to_markdown(res)
    assert "| determinism on vs off (same seeds) | 16 | 0 of 16 (0%) |" in md
    assert "determinism on vs off (same seeds)" in to_html(res)


def test_switch_absent_without_both_modes():
    res = analyze(generate(SyntheticPlan(deterministic=(True,))), config(), reference="ref")
    assert res["determinism"]["switch"]["compared"] == 0
    assert not any(line.startswith("Switching op determinism") for line in res["summary"])


def cpu_like(records):
    """What this CPU does (measured): determinism off changes the arithmetic (other weights than on) but
    repeats with it off are bitwise identical to each other, and the metric does not move."""
    out = copy.deepcopy(records)
    first_off = {}
    for r in out:
        if not r["deterministic"]:
            cell = (r["init_seed"], r["shuffle_seed"], r["split_seed"])
            src = first_off.setdefault(cell, r)
            for k in ("predictions", "weights", "weights_digest", "metrics", "history"):
                r[k] = copy.deepcopy(src[k])
    return out


def test_nothing_to_remove_verdict_is_said_in_every_report():
    res = analyze(cpu_like(generate(SyntheticPlan(sigmas={"init": 0.02}))), config(), reference="ref")
    det = res["determinism"]
    assert det["verdict"] == "nothing_to_remove" and det["repeats_off"]["identical_share"] == 1.0
    assert det["switch"]["identical"] == 0 and det["switch"]["metric_delta_max_abs"] == 0.0
    assert any("bitwise identical even without op determinism: it removed nothing here" in s for s in res["summary"])
    assert any("changed the weights in 16 of 16" in s and "accuracy unchanged" in s for s in res["summary"])
    md, html = to_markdown(res), to_html(res)
    assert "Verdict: nothing to remove" in md and "Verdict: nothing to remove" in html
