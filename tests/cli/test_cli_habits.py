"""Command-line habits: --version, one spelling of the output-format flag, tuning without a search space."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from driftlab import __version__
from driftlab.cli import build_parser, main


def test_version_prints_the_package_version():
    proc = subprocess.run([sys.executable, "-m", "driftlab", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"driftlab {__version__}"


def _format_flags(parser) -> dict[str, list[str]]:
    """Every (sub)command's output-format options, by command path."""
    found: dict[str, list[str]] = {}

    def walk(p, path):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}".strip())
            elif action.help != argparse.SUPPRESS and set(action.option_strings) & {
                    "--format", "--json", "--output-format", "-f"}:
                found.setdefault(path, []).extend(action.option_strings)

    walk(parser, "")
    return found


def test_the_output_format_flag_has_one_spelling_across_commands():
    flags = _format_flags(build_parser())
    assert {"gate", "report show", "report history"} <= set(flags), flags
    assert all(opts == ["--format"] for opts in flags.values()), flags


def test_gate_format_json_and_the_old_spelling_still_work(tmp_path, capsys):
    from driftlab.config import ExperimentConfig
    from driftlab.drift import analyze
    from support.synthetic import SyntheticPlan, generate
    from driftlab.report import write_all

    cfg = ExperimentConfig.model_validate({"name": "syn", "dataset": {"name": "digits"}, "profiles": {"auto": True}})
    res = analyze(generate(SyntheticPlan(profiles=("ref", "b"), n_eval=50, sigmas={"init": 0.02})), cfg, reference="ref")
    res["experiment"] = {"name": "syn", "campaign": "c"}
    path = write_all(res, tmp_path)["json"]
    for flag in (["--format", "json"], ["--json"]):
        assert main(["gate", path, *flag]) == 0
        assert json.loads(capsys.readouterr().out)["status"] == "PASS"


def test_a_tuning_section_without_a_search_space_is_a_clear_validation_error(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text("name: x\ndataset: {name: digits}\ntuning: {trials: 6}\nprofiles: {pools: [{name: cpu-default}]}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "nothing to tune" in err and "search_space" in err and "tuning.study" in err and "None" not in err


@pytest.mark.parametrize("extra", ["", "search_space: {learning_rate: {type: float, low: 0.001, high: 0.1}}\n"
                                       "tuning: {trials: 2}\n"])
def test_without_a_tuning_section_or_with_a_search_space_the_file_is_valid(tmp_path, capsys, extra):
    path = tmp_path / "exp.yaml"
    path.write_text("name: x\ndataset: {name: digits}\nprofiles: {pools: [{name: cpu-default}]}\n" + extra)
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
