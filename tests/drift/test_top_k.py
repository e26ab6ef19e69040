"""P(A beats B) for the top configurations retrained over the same seed points."""

from __future__ import annotations

import pytest

from driftlab.config import ExperimentConfig
from driftlab.drift.topk import attach_top_k, top_k
from driftlab.report import to_html, to_markdown

CONFIGS = [{"units": 32}, {"units": 16}, {"units": 8}]


def config(k: int = 3) -> ExperimentConfig:
    return ExperimentConfig.model_validate({
        "name": "tk", "dataset": {"name": "digits"},
        "search_space": {"units": {"type": "int", "low": 8, "high": 32}},
        "tuning": {"trials": 6, "retrain_top_k": k},
        "seeds": {"init": list(range(4)), "shuffle": list(range(3)), "split": [0, 1], "repeats": 1,
                  "deterministic": [True]},
        "profiles": {"pools": [{"name": "ref"}]}})


def records(means: list[float], noise: float = 0.0) -> list[dict]:
    out = []
    for c, (params, mean) in enumerate(zip(CONFIGS, means)):
        for i in range(4):
            for s in range(3):
                value = mean + noise * ((i * 3 + s) % 5 - 2)  # the same seed point pattern for every config
                out.append({"status": "ok", "profile": "ref", "repeat": 0, "deterministic": True, "init_seed": i,
                            "shuffle_seed": s, "split_seed": 0, "stage": "seeds" if c == 0 else "topk",
                            "spec": {"hparams": {"layers": 1, **params}}, "metrics": {"eval_accuracy": value}})
    out.append({**out[0], "split_seed": 1})  # another split: not a top-k point, never counted
    return out


TUNING = {"top_k_params": CONFIGS, "top_k_trials": [4, 1, 2]}


def test_a_clear_winner_beats_every_runner_up_distinguishably():
    block = top_k(records([0.95, 0.90, 0.85]), TUNING, config(), reference="ref")
    assert block["k"] == 3 and block["points"] == 12
    pair12 = next(p for p in block["pairs"] if (p["a"], p["b"]) == (1, 2))
    assert pair12["n"] == 12 and pair12["p_a_beats_b"] == 1.0 and pair12["distinguishable"]
    assert pair12["ci95"][0] > 0.5 and pair12["ci95"][1] == 1.0
    assert [c["tier"] for c in block["configs"]] == [1, 2, 3] and block["ranking"] == [1, 2, 3]
    assert [c["runs"] for c in block["configs"]] == [12, 12, 12]
    assert "distinguishably better" in block["sentence"]


def test_equal_configurations_are_one_tier_and_a_tie_counts_half():
    block = top_k(records([0.9, 0.9, 0.9]), TUNING, config(), reference="ref")
    assert all(p["p_a_beats_b"] == 0.5 and not p["distinguishable"] for p in block["pairs"])
    assert {c["tier"] for c in block["configs"]} == {1}
    assert "indistinguishable given seed noise" in block["sentence"] and "3 of the top 3" in block["sentence"]


def test_k_limits_the_configurations_and_reports_show_the_table():
    result = {"summary": ["Tolerance gate: PASS."], "tuning": TUNING}
    attach_top_k(result, records([0.95, 0.90, 0.85]), config(k=2), reference="ref")
    assert result["top_k"]["k"] == 2 and len(result["top_k"]["pairs"]) == 1
    assert result["summary"][0].startswith("Retrained over 12 seed points") and result["summary"][-1].startswith("Tolerance")


def test_the_top_k_section_is_in_markdown_and_html(tmp_path):
    from support.synthetic import SyntheticPlan, generate
    from driftlab.drift import analyze

    res = analyze(generate(SyntheticPlan(profiles=("ref",), n_eval=50)), config(), reference="ref")
    res["experiment"] = {"name": "tk", "campaign": "c"}
    res["tuning"] = TUNING
    attach_top_k(res, records([0.95, 0.90, 0.85]), config(), reference="ref")
    for text in (to_markdown(res), to_html(res)):
        assert "Top configurations retrained over seeds" in text and "P(A beats B)" in text
        assert "100%" in text and "distinguishable" in text


def test_retrain_top_k_cannot_exceed_top_k():
    with pytest.raises(ValueError, match="retrain_top_k"):
        ExperimentConfig.model_validate({"name": "x", "dataset": {"name": "digits"},
                                         "tuning": {"top_k": 2, "retrain_top_k": 3},
                                         "search_space": {"u": {"type": "int", "low": 1, "high": 2}}})
