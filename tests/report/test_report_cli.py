"""`driftlab gate`, `driftlab report show` and `driftlab report history` through the real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path


from driftlab.cli import main
from driftlab.config import ExperimentConfig
from driftlab.drift import analyze
from support.synthetic import SyntheticPlan, generate
from driftlab.report import write_all
from driftlab.storage.store import Store

EXIT_OK, EXIT_BAD_INPUT, EXIT_GATE_FAIL = 0, 2, 3


def report(tmp_path: Path, *, versions=None, hardware=0.01, seed=0, **tolerances) -> dict:
    cfg = ExperimentConfig.model_validate({"name": "syn", "dataset": {"name": "digits"}, "profiles": {"auto": True},
                                           "tolerances": tolerances})
    plan = SyntheticPlan(profiles=("ref", "gpu-a"), sigmas={"init": 0.02, "shuffle": 0.02, "hardware": hardware},
                         versions=versions or {}, n_eval=50, seed=seed, flip_rate=0.3 if hardware else 0.05)
    res = analyze(generate(plan), cfg, reference="ref")
    res["experiment"] = {"name": "syn", "campaign": f"c{seed}", "task": "classification"}
    return res


def experiment_file(tmp_path: Path, tolerances: str) -> str:
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: syn\ndataset: {{name: digits}}\nprofiles: {{auto: true}}\ntolerances: {tolerances}\n")
    return str(path)


def test_gate_exit_codes(tmp_path, capsys):
    ok = write_all(report(tmp_path, max_drift_ratio=100.0), tmp_path / "ok")["json"]
    bad = write_all(report(tmp_path, max_drift_ratio=0.0), tmp_path / "bad")["json"]
    assert main(["gate", ok]) == EXIT_OK
    assert "gate: PASS" in capsys.readouterr().out
    assert main(["gate", bad]) == EXIT_GATE_FAIL
    out = capsys.readouterr().out
    assert re.search(r"^FAIL\s+drift_ratio\s+gpu-a", out, re.M) and "gate: FAIL" in out
    assert main(["gate", str(tmp_path / "missing.json")]) == EXIT_BAD_INPUT
    assert "cannot read it" in capsys.readouterr().err
    (tmp_path / "other.json").write_text('{"hello": 1}')
    assert main(["gate", str(tmp_path / "other.json")]) == EXIT_BAD_INPUT
    assert "not a driftlab report.json" in capsys.readouterr().err


def test_gate_reevaluates_stored_statistics_against_new_budgets(tmp_path, capsys):
    ok = write_all(report(tmp_path, max_drift_ratio=100.0), tmp_path / "ok")["json"]
    strict = experiment_file(tmp_path, "{per_profile: {gpu-a: {max_drift_ratio: 0.0}}}")
    assert main(["gate", ok, "--config", strict]) == EXIT_GATE_FAIL
    assert main(["gate", ok, "--config", experiment_file(tmp_path, "{max_drift_ratio: 100}"), "--json"]) == EXIT_OK
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["status"] == "PASS"
    assert main(["gate", ok, "--config", experiment_file(tmp_path, "{max_drift_ratio: -1}")]) == EXIT_BAD_INPUT
    assert "max_drift_ratio" in capsys.readouterr().err


def test_report_show_markdown_and_html(tmp_path, capsys):
    path = write_all(report(tmp_path), tmp_path / "r")["json"]
    assert main(["report", "show", path]) == EXIT_OK
    assert capsys.readouterr().out.startswith("# driftlab report: syn")
    out_html = tmp_path / "again.html"
    assert main(["report", "show", path, "--html", str(out_html)]) == EXIT_OK
    assert out_html.read_text().count("<svg") >= 5


def test_history_flags_a_jump_after_a_version_change(tmp_path, capsys):
    store = Store(f"sqlite:///{tmp_path / 'driftlab.sqlite'}")
    old = {"gpu-a": {"tensorflow": "2.20.0"}, "ref": {"tensorflow": "2.20.0"}}
    new = {"gpu-a": {"tensorflow": "2.21.0"}, "ref": {"tensorflow": "2.21.0"}}
    for seed, (versions, hardware) in enumerate([(old, 0.0), (old, 0.0), (new, 0.02)]):
        res = report(tmp_path, versions=versions, hardware=hardware, seed=seed)
        store.save_report("syn", f"c{seed}", res["gate"]["status"], json.loads(json.dumps(res, default=str)))
    assert main(["report", "history", "--home", str(tmp_path), "--format", "json"]) == EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    assert [r["campaign"] for r in rows] == ["c0", "c1", "c2"]
    assert rows[0]["jumps"] == [] and rows[1]["jumps"] == []  # same versions, identical: no jump
    assert rows[2]["changes"] == ["tensorflow 2.20.0 → 2.21.0", "reference tensorflow 2.20.0 → 2.21.0"]
    assert any("bitwise identity with the reference lost" in j for j in rows[2]["jumps"])
    assert any(j.startswith("disagreement") for j in rows[2]["jumps"])
    page = tmp_path / "history.html"
    assert main(["report", "history", "--home", str(tmp_path), "--html", str(page)]) == EXIT_OK
    assert "1 jump(s) flagged over 3 row(s)" in capsys.readouterr().out
    assert "<svg" in page.read_text()
    assert main(["report", "history", "--home", str(tmp_path / "nowhere")]) == EXIT_BAD_INPUT
