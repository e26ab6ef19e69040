"""Reports render for every kind of plan, escape user strings, and never show NaN."""

from __future__ import annotations

import json
import re

import pytest

from driftlab.config import ExperimentConfig
from driftlab.drift import analyze
from driftlab.drift.synthetic import SyntheticPlan, generate
from driftlab.report import to_html, to_markdown, write_all

EVIL = "<script>alert('x')</script>"
SIGMAS = {"init": 0.02, "shuffle": 0.01, "split": 0.01, "hardware": 0.01, "nondeterminism": 0.003}


def result_for(task: str, design: str, profiles=("ref", "gpu-b"), **plan) -> dict:
    dataset = {"name": "digits"} if task == "classification" else {"name": "synthetic-regression"}
    cfg = ExperimentConfig.model_validate({"name": "syn", "dataset": dataset, "profiles": {"auto": True},
                                           "tolerances": {"max_drift_ratio": 2.0, "max_metric_sd": 0.05}})
    records = generate(SyntheticPlan(task=task, design=design, profiles=profiles, sigmas=SIGMAS, n_eval=60,
                                     **plan))
    res = analyze(records, cfg, reference=profiles[0])
    res["experiment"] = {"name": "syn", "campaign": "c1", "task": task}
    return res


PLANS = [("classification", "factorial"), ("classification", "one-at-a-time"),
         ("regression", "factorial"), ("regression", "one-at-a-time")]


@pytest.mark.parametrize("task,design", PLANS)
def test_every_plan_renders_all_formats_without_nan(tmp_path, task, design):
    res = result_for(task, design, init=(0, 1, 2), shuffle=(0, 1), split=(0, 1))
    paths = write_all(res, tmp_path)
    assert set(paths) == {"json", "markdown", "html"}
    text = (tmp_path / "report.json").read_text()
    body = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in report.json"))
    assert body["schema"] == "driftlab.report/2" and body["variance"]["design"] == design
    for name in ("report.md", "report.html"):
        content = (tmp_path / name).read_text()
        assert not re.search(r"\bnan\b|\binf\b", content, re.IGNORECASE), name
    html = (tmp_path / "report.html").read_text()
    # The five plots: per-source SD, variance shares, drift vs seed noise, loss curves (one per source), heat map.
    assert html.count("<svg") >= 4 + len(body["curves"])
    for title in ("SD of", "Share of the variance", "in units of seed noise", "training loss",
                  "between profiles"):
        assert title in html, title


def test_single_level_plan_renders_not_varied():
    res = result_for("classification", "factorial", profiles=("ref",), init=(0,), shuffle=(0,), split=(0,),
                     repeats=1, deterministic=(True,))
    md, html = to_markdown(res), to_html(res)
    assert md.count("not varied") >= 5 and "not varied" in html
    assert "hardware not varied" in html and "not estimable" in html
    assert "NaN" not in md + html and "nan" not in md.lower().split()


def test_user_strings_are_escaped_everywhere():
    res = result_for("classification", "factorial", profiles=("ref", EVIL), init=(0, 1), shuffle=(0,),
                     split=(0,))
    res["experiment"] = {"name": EVIL, "campaign": EVIL, "skipped_profiles": [{"name": EVIL, "reason": EVIL}]}
    res["tuning"] = {"best_params": {"units": EVIL}, "best_value": 0.9, "best_trial": 1}
    html, md = to_html(res), to_markdown(res)
    assert "<script" not in html.lower() and "&lt;script&gt;" in html
    assert "<script" not in md.lower()
    assert "script-src" not in html and "default-src 'none'" in html  # CSP forbids scripts outright
