"""Reports render for every kind of plan, escape user strings, and never show NaN."""

from __future__ import annotations

import json
import re

import pytest

from driftlab.config import ExperimentConfig
from driftlab.drift import analyze
from support.synthetic import SyntheticPlan, generate
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


def _tuning_section(text: str) -> str:
    return text.split("## Tuning", 1)[1] if "## Tuning" in text else ""


@pytest.mark.parametrize("tuning", [
    {"best_params": {}, "trials_per_worker": [0]},  # what select_best gave before it named the source
    {"best_params": {}, "source": {"kind": "none"}, "trials_per_worker": [0.0]},
])
def test_tuning_section_without_tuning_says_so_and_prints_no_none(tuning):
    res = result_for("classification", "factorial", profiles=("ref",), init=(0, 1), shuffle=(0,), split=(0,))
    res["tuning"] = tuning
    md, html = to_markdown(res), to_html(res)
    sentence = ("No tuning in this experiment: the fixed hyperparameters in model.hyperparameters were "
                "retrained.")
    assert _tuning_section(md).strip() == sentence
    assert f"<h2>Tuning</h2><p>{sentence}</p>" in html
    assert "None" not in md and "None" not in html and "Best value" not in md + html


def test_no_tuning_summary_at_all_leaves_the_section_out():
    res = result_for("classification", "factorial", profiles=("ref",), init=(0, 1), shuffle=(0,), split=(0,))
    res.pop("tuning", None)
    assert "## Tuning" not in to_markdown(res) and "<h2>Tuning</h2>" not in to_html(res)


STORAGE = "postgresql+psycopg2://user:***@db.example/optuna"
EXISTING = {
    # Counts and trial numbers as floats: a KFP dict turns every int into one.
    "study": "their-study", "direction": "maximize", "best_params": {"units": 32, "lr": 0.0123456789, "act": "tanh"},
    "best_value": 0.912345, "best_trial": 3.0, "n_complete": 17.0, "n_pruned": 2.0, "n_failed": 1.0,
    "n_unfinished": 0.0, "top_k_values": [0.912345, 0.9, 0.85], "top_k_trials": [3.0, 7.0, 1.0],
    "top_k_params": [{"units": 32, "lr": 0.0123456789, "act": "tanh"}, {"units": 16, "lr": 0.001, "act": "relu"},
                     {"units": 8, "lr": 0.01, "act": "relu"}],
    "stability": {"k": 3.0, "spread": 0.062345, "relative_spread": 0.0683, "sd": 0.03, "best_minus_second": 0.01},
    "source": {"kind": "existing-study", "study": "their-study", "storage": STORAGE, "trial": 3.0},
    "open_with": {"optuna-dashboard": f"optuna-dashboard '{STORAGE}'",
                  "optuna studies": f"optuna studies --storage '{STORAGE}'",
                  "optuna trials": f"optuna trials --study-name their-study --storage '{STORAGE}'"},
}


def test_tuning_section_from_an_existing_study():
    res = result_for("classification", "factorial", profiles=("ref",), init=(0, 1), shuffle=(0,), split=(0,))
    res["tuning"] = json.loads(json.dumps(EXISTING))
    md, html = to_markdown(res), to_html(res)
    section = _tuning_section(md)
    assert "Best value 0.9123 (maximize) at trial 3; trials: 17 complete, 2 pruned, 1 failed." in section
    assert f"Parameters from the existing Optuna study 'their-study', trial 3 in {STORAGE}; driftlab did not tune" \
        in section
    assert "| units | 32 |" in section and "| lr | 0.0123456789 |" in section and "| act | tanh |" in section
    assert "Top 3 trials (values span 0.06234, 6.8% of the best):" in section
    assert "| 1 | 3 | 0.9123 | act=tanh, lr=0.0123456789, units=32 |" in section
    assert "| 2 | 7 | 0.9000 | act=relu, lr=0.001, units=16 |" in section
    assert "the password is shown as ***" in section
    block = section.split("```sh\n", 1)[1].split("\n```", 1)[0]
    assert block.splitlines() == list(EXISTING["open_with"].values())  # verbatim, ready to paste
    assert not re.search(r"\d\.0\b", section.replace("0.0123456789", ""))  # no float counts like 17.0
    assert "None" not in section
    assert "<pre><code>optuna-dashboard &#x27;postgresql+psycopg2://user:***@db.example/optuna&#x27;" in html
    assert "17 complete, 2 pruned, 1 failed" in html and "existing Optuna study &#x27;their-study&#x27;, trial 3" in html
    assert "<th>parameter</th><th>best value</th>" in html and "<td>units</td><td>32</td>" in html


def test_tuning_section_from_driftlab_own_study():
    res = result_for("classification", "factorial", profiles=("ref",), init=(0, 1), shuffle=(0,), split=(0,))
    res["tuning"] = {**json.loads(json.dumps(EXISTING)),
                     "source": {"kind": "driftlab", "study": "driftlab.syn.c1", "storage": "/h/optuna-journal.log",
                                "trial": 3}}
    section = _tuning_section(to_markdown(res))
    assert "Parameters from driftlab's own study 'driftlab.syn.c1', trial 3." in section


def test_tuning_section_escapes_user_strings():
    res = result_for("classification", "factorial", profiles=("ref",), init=(0, 1), shuffle=(0,), split=(0,))
    evil = json.loads(json.dumps(EXISTING))
    evil["best_params"] = {EVIL: EVIL}
    evil["top_k_params"] = [{EVIL: EVIL}]
    evil["source"]["study"] = EVIL
    evil["open_with"] = {"optuna trials": f"optuna trials --study-name '{EVIL}' --storage x```y"}
    res["tuning"] = evil
    html, md = to_html(res), to_markdown(res)
    assert "<script" not in html.lower() and "&lt;script&gt;" in html
    section = _tuning_section(md)
    fence = "````"  # longer than the backticks inside the command
    outside = section.split(fence + "sh", 1)[0]
    assert "<script" not in outside.lower() and "&lt;script&gt;" in outside
    assert f"{fence}sh\noptuna trials --study-name '{EVIL}' --storage x```y\n{fence}" in section
