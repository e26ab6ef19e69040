"""A measurement that did not happen cannot pass: the gate's INCOMPLETE outcome (exit 4)."""

from __future__ import annotations

import pytest

from driftlab.cli import main
from driftlab.config import ExperimentConfig
from driftlab.drift import analyze
from driftlab.drift.gate import EXIT_CODES
from support.synthetic import SyntheticPlan, generate
from driftlab.report import to_html, to_markdown, write_all

PROFILES = ["ref", "b"]
ERROR = 'ValueError: width must be positive\n  File "/home/u/models.py", line 3, in build: raise ValueError(...)'


def config(**tolerances) -> ExperimentConfig:
    return ExperimentConfig.model_validate({
        "name": "syn", "dataset": {"name": "digits"},
        "seeds": {"init": [0, 1], "shuffle": [0, 1], "split": [0, 1], "repeats": 2, "deterministic": [True, False]},
        "profiles": {"reference": "ref", "pools": [{"name": p} for p in PROFILES]},
        "tolerances": tolerances})


def records() -> list[dict]:
    plan = SyntheticPlan(profiles=tuple(PROFILES), n_eval=100, exact=True,
                         sigmas={"init": 0.02, "shuffle": 0.02, "split": 0.02, "hardware": 0.01, "nondeterminism": 0.004})
    return generate(plan)


def fail(recs: list[dict], where=lambda r: True) -> list[dict]:
    return [{**r, "status": "failed", "error": ERROR, "predictions": None} if where(r) else r for r in recs]


def result(recs, **tolerances) -> dict:
    return analyze(recs, config(**tolerances), reference="ref", profiles=PROFILES)


def test_a_complete_campaign_passes_and_says_every_planned_measurement_was_made():
    recs = records()
    res = result(recs)
    assert res["plan"]["runs"] == len(recs) == 48  # 32 on the reference, 16 deterministic on b
    assert res["plan"]["sources_varied"] == ["init", "shuffle", "split", "nondeterminism", "hardware"]
    assert res["gate"]["status"] == "PASS"
    assert {c["check"] for c in res["gate"]["checks"]} == {"failed_share"}


def test_every_run_failed_is_incomplete_never_pass_and_never_not_varied():
    res = result(fail(records()), max_disagreement=0.5, max_metric_delta=0.1)
    assert res["gate"]["status"] == "INCOMPLETE"
    statuses = {(c["check"], c["where"]): c["status"] for c in res["gate"]["checks"]}
    for source in ("init", "shuffle", "split", "nondeterminism"):
        assert statuses[("measured", source)] == "INCOMPLETE"
    assert statuses[("compared", "b")] == "INCOMPLETE" and statuses[("failed_share", "campaign")] == "INCOMPLETE"
    assert res["summary"][0].startswith("48 of 48 planned runs failed: 48× ValueError: width must be positive")
    assert not any("not varied" in line for line in res["summary"])
    for s in res["sources"].values():
        assert s["planned"] and "planned, but" in s["note"]
    assert res["summary"][-1].startswith("Tolerance gate: INCOMPLETE")


def test_one_profile_that_failed_makes_the_gate_incomplete_and_names_it():
    res = result(fail(records(), lambda r: r["profile"] == "b"), max_drift_ratio=10)
    assert res["gate"]["status"] == "INCOMPLETE"
    assert [c["where"] for c in res["gate"]["checks"] if c["status"] == "INCOMPLETE"] == ["b", "hardware", "campaign"]
    assert res["sources"]["init"]["varied"], "the reference's comparisons still stand"


def test_max_failed_share_is_the_budget_for_failures():
    recs = fail(records(), lambda r: r["key"] == records()[0]["key"])
    assert result(recs)["gate"]["status"] == "INCOMPLETE", "default budget: no failed run"
    assert result(recs, max_failed_share=0.05)["gate"]["status"] == "PASS", "1 of 48 is within 5%"
    assert result(recs, max_failed_share=0.02)["gate"]["status"] == "INCOMPLETE", "1 of 48 is above 2%"


def test_a_budget_that_was_measured_and_exceeded_fails_even_when_something_else_is_missing():
    res = result(fail(records(), lambda r: r["profile"] == "b"), max_metric_sd=0.0)
    assert res["gate"]["status"] == "FAIL"


def test_reports_show_the_failure_and_the_cli_exits_with_the_incomplete_code(tmp_path, capsys):
    res = result(fail(records()))
    res["experiment"] = {"name": "syn", "campaign": "c", "task": "classification"}
    md, html = to_markdown(res), to_html(res)
    for text in (md, html):
        assert "Failed runs" in text and "width must be positive" in text and "models.py" in text
        assert "INCOMPLETE" in text
    path = write_all(res, tmp_path)["json"]
    assert main(["gate", path]) == EXIT_CODES["INCOMPLETE"] == 4
    out = capsys.readouterr().out
    assert "gate: INCOMPLETE" in out and "48 of 48 planned runs did not finish" in out


@pytest.mark.parametrize("status, code", [("PASS", 0), ("FAIL", 3), ("INCOMPLETE", 4)])
def test_exit_codes_are_distinct_per_outcome(status, code):
    assert EXIT_CODES[status] == code
