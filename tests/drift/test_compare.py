"""`driftlab compare`: two campaigns paired by seed point; a control shows nothing, a shift is found."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from driftlab.cli import main
from driftlab.drift.compare import NoSharedPoints, compare, holm, wilson
from driftlab.storage.store import Store
from support.factories import run_spec
from support.synthetic import SyntheticPlan, generate

SIGMAS = {"init": 0.01, "shuffle": 0.01, "split": 0.01, "nondeterminism": 0.002}
PLAN = dict(init=(0, 1, 2), shuffle=(0, 1), split=(0, 1), repeats=2, profiles=("ref", "gpu-b"), sigmas=SIGMAS)


def _campaign(shift: float = 0.0, noise: float = 1e-4, seed: int = 1) -> list[dict]:
    """The same plan's records with every eval metric moved by ``shift`` plus tiny per-run noise."""
    rng = np.random.default_rng(seed)
    out = []
    for r in generate(SyntheticPlan(**PLAN)):
        r = copy.deepcopy(r)
        r["key"] = f"{r['key']}-{seed}"  # another campaign (other epochs): other keys, same seed points
        for k in list(r["metrics"]):
            r["metrics"][k] = r["metrics"][k] + shift + float(rng.normal(0, noise))
        out.append(r)
    return out


def test_control_same_plan_tiny_noise_is_not_different():
    res = compare(_campaign(seed=1), _campaign(seed=2), names=("a", "b"))
    assert {(r["metric"], r["profile"]) for r in res["rows"]} == {("accuracy", "ref"), ("accuracy", "gpu-b")}
    ref = next(r for r in res["rows"] if r["profile"] == "ref")
    # 3·2·2 (init, shuffle, split) × (determinism on: repeats averaged, 1) + (off: 2 repeats) = 12 + 24 points
    assert ref["pairs"] == 36
    assert abs(ref["mean_delta"]) < 1e-4 and ref["seed_sd_a"] > 0.005  # Δ is far inside seed noise
    assert ref["delta_ci95"][0] < ref["mean_delta"] < ref["delta_ci95"][1]
    assert res["flagged"] == 0 and not any(r["beyond_noise"] for r in res["rows"])


def test_shifted_metric_is_significant_beyond_noise_and_b_is_better():
    res = compare(_campaign(seed=1), _campaign(shift=0.05, seed=2), names=("a", "b"))
    for r in res["rows"]:
        assert r["mean_delta"] == pytest.approx(-0.05, abs=1e-3)
        assert r["significant"] and r["beyond_noise"] and r["flagged"] and r["better"] == "b"
        assert r["p_a_greater"] == 0.0 and r["p_a_greater_ci95"][1] < 0.25
        assert r["delta_ci95"][0] < -0.049 and r["delta_ci95"][1] > -0.051 and r["delta_ci95"][1] < 0
    assert res["flagged"] == 2


def test_bootstrap_is_seeded_and_holm_and_wilson_are_right():
    a, b = _campaign(seed=1), _campaign(shift=0.001, seed=2)
    assert compare(a, b)["rows"] == compare(a, b)["rows"]
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)


def test_no_shared_seed_point_names_both_campaigns_and_what_differs():
    a = _campaign(seed=1)
    b = [dict(r, init_seed=r["init_seed"] + 10) for r in _campaign(seed=2)]
    with pytest.raises(NoSharedPoints) as err:
        compare(a, b, names=("base", "new"))
    text = str(err.value)
    assert "'base'" in text and "'new'" in text and "init: base [0, 1, 2] vs new [10, 11, 12]" in text
    assert err.value.exit_code == 2


def _store_campaign(store: Store, campaign: str, records: list[dict]) -> None:
    exp = store.experiment_id("syn")
    pairs = []
    for r in records:
        spec = run_spec({"name": r["profile"]}, experiment="syn", campaign=campaign, init_seed=r["init_seed"],
                        shuffle_seed=r["shuffle_seed"], split_seed=r["split_seed"], repeat=r["repeat"],
                        deterministic=r["deterministic"], epochs=1 if campaign == "one" else 3)
        pairs.append((spec, r))
    store.save_runs(exp, pairs)


def test_cli_compare_gate_exit_codes(tmp_path, capsys):
    store = Store(f"sqlite:///{tmp_path / 'driftlab.sqlite'}")
    _store_campaign(store, "one", _campaign(seed=1))
    _store_campaign(store, "same", _campaign(seed=2))
    _store_campaign(store, "shifted", _campaign(shift=0.05, seed=3))
    home = ["--home", str(tmp_path), "--experiment", "syn"]
    assert main(["compare", "one", "same", *home, "--gate"]) == 0
    out = capsys.readouterr().out
    assert "no significant difference" in out or "within 2× seed SD" in out
    assert "0 difference(s) beyond seed noise" in out
    assert main(["compare", "one", "shifted", *home, "--gate"]) == 3
    out = capsys.readouterr().out
    assert "DIFFERENT (shifted better)" in out and "2 difference(s) beyond seed noise" in out
    assert main(["compare", "one", "shifted", *home]) == 0  # without --gate: a report, exit 0
    capsys.readouterr()
    assert main(["compare", "one", "shifted", *home, "--format", "json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["flagged"] == 2 and body["experiment"] == "syn" and len(body["rows"]) == 2
    assert main(["compare", "one", "missing", *home, "--gate"]) == 2
    assert "campaign 'missing'" in capsys.readouterr().err


def test_report_history_names_the_compare_command(tmp_path, capsys):
    from driftlab.config import ExperimentConfig
    from driftlab.drift import analyze

    store = Store(f"sqlite:///{tmp_path / 'driftlab.sqlite'}")
    cfg = ExperimentConfig.model_validate({"name": "syn", "dataset": {"name": "digits"}, "profiles": {"auto": True}})
    res = analyze(generate(SyntheticPlan(profiles=("ref", "gpu-a"), sigmas={"init": 0.02}, n_eval=50)), cfg,
                  reference="ref")
    res["experiment"] = {"name": "syn", "campaign": "c0", "task": "classification"}
    store.save_report("syn", "c0", res["gate"]["status"], json.loads(json.dumps(res, default=str)))
    assert main(["report", "history", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "compare two campaigns: driftlab compare A B --experiment NAME" in out
