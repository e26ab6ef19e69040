"""Experiment files: valid examples load; every mistake is named with its field, value and fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from driftlab.config import ConfigError, load_config, load_config_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(path):
    config = load_config(path)
    assert config.name
    assert config.task in ("classification", "regression")


def test_at_least_two_examples_ship():
    assert len(EXAMPLES) >= 2


def problems_of(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "bad.yaml")
    return {p.field: str(p) for p in info.value.problems}


MINIMAL = "name: ok\ndataset: {name: digits}\n"


def test_minimal_file_gets_defaults():
    config = load_config_text(MINIMAL)
    assert config.seeds.repeats == 2
    assert config.profiles.auto is True
    assert config.metric == "accuracy" and config.direction == "maximize"


def test_regression_defaults_to_rmse_minimized():
    config = load_config_text("name: r\ndataset: {name: synthetic-regression}\n")
    assert (config.task, config.metric, config.direction) == ("regression", "rmse", "minimize")


def test_each_problem_names_field_value_and_fix():
    problems = problems_of("""
name: Bad Name
dataset: {name: digits, eval_fraction: 2}
modle: {}
search_space:
  lr: {type: float, low: 1, high: 0}
  units: {type: int, low: 1}
seeds: {init: [], repeats: 0}
profiles: {reference: x, pools: [{name: a, isa: AVX9}]}
""")
    assert "must be lowercase" in problems["name"] and "'Bad Name'" in problems["name"]
    assert "less than 0.9" in problems["dataset.eval_fraction"] and "got 2" in problems["dataset.eval_fraction"]
    assert "not a known field" in problems["modle"]
    assert "low (1.0) must not exceed high (0.0)" in problems["search_space.lr"]
    assert "required" in problems["search_space.units.high"]
    assert "at least 1" in problems["seeds.init"]
    assert "greater than or equal to 1" in problems["seeds.repeats"]
    assert "'AVX2'" in problems["profiles.pools[0].isa"] and "'AVX9'" in problems["profiles.pools[0].isa"]


@pytest.mark.parametrize("text, field, needle", [
    ("name: x\n", "dataset", "required"),
    ("name: x\ndataset: {name: csv}\n", "dataset", "needs 'path'"),
    ("name: x\ndataset: {name: csv, path: a.csv}\n", "dataset", "needs 'target'"),
    ("name: x\ndataset: {name: digits}\nmodel: {builder: 'not a builder'}\n", "model.builder", "package.module:function"),
    ("name: x\ndataset: {name: digits}\nseeds: {init: [1, 1]}\n", "seeds.init", "unique"),
    ("name: x\ndataset: {name: digits}\nprofiles: {reference: b, pools: [{name: a}]}\n", "profiles", "not one of the pools"),
    ("name: x\ndataset: {name: digits}\nprofiles: {pools: [{name: a}, {name: a}]}\n", "profiles", "repeated: a"),
    ("name: x\ndataset: {name: digits}\nprofiles: {pools: [{name: g, kind: gpu, isa: AVX}]}\n",
     "profiles.pools[0]", "only for kind: cpu"),
    ("name: x\ndataset: {name: digits}\ntuning: {sampler: grid}\nsearch_space: {lr: {type: float, low: 0.1, high: 1}}\n",
     "", "grid"),
])
def test_single_mistakes(text, field, needle):
    problems = problems_of(text)
    assert field in problems, problems
    assert needle in problems[field]


def test_not_a_mapping_and_bad_yaml():
    assert "YAML mapping" in problems_of("- a\n- b\n")[""]
    assert "not valid YAML (line 2" in problems_of("name: x\n  bad: [\n")[""]


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "file not found" in str(info.value)


def test_cli_refuses_bad_file_without_traceback_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad Name\ndataset: {name: digits, eval_fraction: 5}\nextra: 1\n")
    home = tmp_path / "home"
    proc = subprocess.run([sys.executable, "-m", "driftlab", "run", str(bad), "--home", str(home)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "3 problem(s)" in proc.stderr
    for field in ("name:", "dataset.eval_fraction:", "extra:"):
        assert field in proc.stderr
    assert not home.exists(), "a refused experiment must not create its results folder"


def test_cli_refuses_isa_this_cpu_lacks(tmp_path, monkeypatch):
    from driftlab.config import profiles

    flags = profiles.cpu_flags()
    missing = [isa for isa in profiles.ISA_REQUIREMENTS if isa not in profiles.supported_isas(flags)]
    if not missing:
        pytest.skip("this CPU supports every ISA cap")
    cfg = tmp_path / "isa.yaml"
    cfg.write_text(f"name: isa\ndataset: {{name: digits}}\nprofiles: {{pools: [{{name: a}}, "
                   f"{{name: b, isa: {missing[-1]}}}]}}\n")
    proc = subprocess.run([sys.executable, "-m", "driftlab", "validate", str(cfg)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"cannot run {missing[-1]}" in proc.stderr and "Traceback" not in proc.stderr
