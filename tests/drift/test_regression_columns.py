"""Regression columns are named for what they are: an RMS prediction difference in target units, not a disagreement."""

from __future__ import annotations

from rich.console import Console

from driftlab.cli.experiment import print_summary
from driftlab.config import ExperimentConfig
from driftlab.drift import analyze
from driftlab.report import to_html, to_markdown
from support.synthetic import SyntheticPlan, generate


def result(task: str):
    dataset = {"name": "digits"} if task == "classification" else {"name": "synthetic-regression"}
    cfg = ExperimentConfig.model_validate({"name": "syn", "dataset": dataset, "profiles": {"auto": True}})
    return analyze(generate(SyntheticPlan(task=task, profiles=("ref", "b"), sigmas={"hardware": 0.01})), cfg,
                   reference="ref")


def terminal(res) -> str:
    console = Console(record=True, width=200)
    print_summary(console, res)
    return console.export_text()


def test_regression_tables_say_rms_prediction_diff():
    res = result("regression")
    text = terminal(res)
    assert "RMS prediction diff" in text and "disagreement" not in text.split("•")[0]
    for report in (to_markdown(res), to_html(res)):
        assert "RMS prediction diff (target units)" in report and "RMS pred. diff" not in report


def test_classification_tables_keep_disagreement():
    text = terminal(result("classification"))
    assert "disagreement" in text and "RMS prediction diff" not in text
