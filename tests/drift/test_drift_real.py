"""One real, tiny campaign: Keras runs on two CPU profiles, aggregated into all report formats."""

from __future__ import annotations

import json

import pytest

CONFIG = """
name: drift-real
dataset: {name: digits, eval_fraction: 0.25}
model: {builder: mlp, epochs: 2, batch_size: 64, hyperparameters: {units: 16, layers: 1}}
seeds: {design: factorial, init: [0, 1], shuffle: [0], split: [0], repeats: 2, deterministic: [true]}
profiles:
  reference: cpu-default
  pools:
    - name: cpu-default
    - name: cpu-sse41
      isa: SSE41
tolerances: {max_metric_delta: 0.05, min_identical_share: 0.0}
"""


@pytest.mark.slow
def test_real_runs_aggregate_into_reports(tmp_path, monkeypatch):
    from driftlab import stages

    monkeypatch.setenv("DRIFTLAB_HOME", str(tmp_path))
    monkeypatch.delenv("DRIFTLAB_DB_URL", raising=False)
    monkeypatch.setenv("DRIFTLAB_WHERE", "local")
    seeds = stages.retrain_seeds(CONFIG, "t", {}, jobs=2, quiet=True)
    nodes = stages.retrain_node(CONFIG, "t", {}, "cpu-sse41", jobs=2, quiet=True)
    assert seeds["failed"] == 0 and nodes["failed"] == 0
    out = stages.aggregate(CONFIG, "t", str(tmp_path / "report"))
    result = json.loads((tmp_path / "report" / "report.json").read_text())
    assert set(out["paths"]) == {"json", "markdown", "html"}
    assert result["counts"]["ok"] == 8 and result["reference"] == "cpu-default"
    # Determinism on, same profile: repeats are bitwise identical (the claim under test) ...
    assert result["determinism"]["repeats_on"]["identical_share"] == 1.0
    # ... while the init seed really moves the weights (the control: the randomness was there).
    assert result["sources"]["init"]["varied"] and result["sources"]["init"]["identical_share"] == 0.0
    assert result["sources"]["init"]["weight_distance"] > 0
    for source in ("shuffle", "split", "nondeterminism"):
        assert result["sources"][source]["varied"] is False
    assert result["hardware"]["cpu-sse41"]["compared"] == 2
    assert result["variance"]["design"] == "factorial"
    assert out["gate"] == result["gate"]["status"] and out["metrics"]["gate_pass"] in (0.0, 1.0)
    html = (tmp_path / "report" / "report.html").read_text()
    assert html.count("<svg") >= 5 and "cpu-sse41" in html
