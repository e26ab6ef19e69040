"""Strict experiment files: no key twice, no lax coercion, every problem with its line (issue 14, defect 6)."""

from __future__ import annotations

import pytest

from driftlab.config import ConfigError, load_config_text
from driftlab.config import yamlfile

BASE = "name: strict\ndataset: {name: digits}\n"


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "f.yaml")
    return {p.field: str(p) for p in info.value.problems}


@pytest.mark.parametrize("text, field, lines", [
    (BASE + "model:\n  epochs: 6\n  epochs: 600\n", "model.epochs", "lines 4 and 5"),
    ("name: a\n" + BASE, "name", "lines 1 and 2"),
    (BASE + "profiles:\n  pools:\n    - name: a\n      isa: AVX\n      isa: SSE41\n", "profiles.pools[0].isa",
     "lines 6 and 7"),
    (BASE + "search_space:\n  u: {type: int, low: 1, high: 4, low: 2}\n", "search_space.u.low", "lines 4 and 4"),
    (BASE + "model:\n  hyperparameters: {1: a, true: b}\n", "model.hyperparameters.1", "lines 4 and 4"),
])
def test_a_key_given_twice_is_refused_with_both_lines(text, field, lines):
    found = problems(text)
    assert field in found and lines in found[field] and "twice" in found[field], found


def test_a_key_given_three_times_names_every_line():
    assert "3 times (lines 4, 5 and 6)" in problems(BASE + "model:\n  epochs: 1\n  epochs: 2\n  epochs: 3\n")[
        "model.epochs"]


def test_the_same_key_in_different_mappings_and_merge_overrides_are_fine():
    config = load_config_text(BASE + "model: {epochs: 2}\nprofiles: {pools: [{name: a}, {name: b}]}\n")
    assert config.name == "strict" and [p.name for p in config.profiles.pools] == ["a", "b"]
    merged = yamlfile.parse("base: &b {epochs: 3, batch_size: 8}\nmodel:\n  <<: *b\n  epochs: 4\n")
    assert merged.data["model"] == {"epochs": 4, "batch_size": 8} and not merged.repeated
    assert merged.lines["model.epochs"] == 4


@pytest.mark.parametrize("text, field, needle", [
    (BASE + "model:\n  epochs: true\n", "model.epochs", "must be a whole number, not true/false (got True; line 4)"),
    (BASE + "model:\n  epochs: '6'\n", "model.epochs", "not text (write the number without quotes)"),
    (BASE + "model:\n  epochs: 6.0\n", "model.epochs", "write 6, not 6.0"),
    (BASE + "model:\n  batch_size: 1e3\n", "model.batch_size", "YAML reads 1e3 as text: write 1000"),
    (BASE + "tolerances:\n  max_disagreement: false\n",
     "tolerances.max_disagreement", "must be a number, not true/false (got False; line 4)"),
    (BASE + "profiles:\n  pools:\n    - name: a\n      onednn: 'yes'\n", "profiles.pools[0].onednn",
     "must be true or false, not text (write true or false, without quotes) (got 'yes'; line 6)"),
    (BASE + "profiles:\n  pools:\n    - name: a\n      onednn: 1\n", "profiles.pools[0].onednn",
     "must be true or false (got 1; line 6)"),
    ("name: 5\ndataset: {name: digits}\n", "name", "must be text; quote it (e.g. '5') (got 5; line 1)"),
    (BASE + "seeds:\n  deterministic: [true, 'no']\n", "seeds.deterministic[1]", "line 4"),
])
def test_no_lax_coercion_each_problem_with_its_line(text, field, needle):
    found = problems(text)
    assert field in found and needle in found[field], found


def test_numbers_stay_numbers_where_they_are_expected():
    config = load_config_text(BASE.replace("{name: digits}", "{name: digits, eval_fraction: 0.25, noise: 1}") +
                              "model: {epochs: 6, hyperparameters: {units: 16, rate: 0.5, act: relu, bn: true}}\n"
                              "tolerances: {max_metric_delta: 1}\nprofiles: {pools: [{name: a, onednn: false}]}\n")
    assert config.dataset.noise == 1.0 and config.tolerances.max_metric_delta == 1.0  # int accepted for float
    assert config.model.hyperparameters == {"units": 16, "rate": 0.5, "act": "relu", "bn": True}
    assert config.profiles.pools[0].onednn is False


def test_a_missing_field_gets_the_line_of_its_section():
    assert "dataset.name: is required (line 2)" in problems("name: x\ndataset:\n  eval_fraction: 0.2\n")[
        "dataset.name"]


def test_an_alias_bomb_is_walked_once_per_node():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
    parsed = yamlfile.parse(bomb + "name: *i\n")  # 9**9 paths, 9 * 9 nodes
    assert len(parsed.lines) < 200
    found = problems(bomb + "name: *i\ndataset: {name: digits}\n")
    assert "name" in found and len(found["name"]) < 300


def test_too_deep_nesting_and_too_long_text_are_refused():
    assert "nested too deeply" in problems("[" * 5000)[""]
    assert "nested too deeply" not in str(problems("[" * 20 + "]" * 20))  # control: a list is no mapping
    assert "more than 96 KiB" in problems(BASE + "#" + "x" * (96 * 1024) + "\n")[""]
    load_config_text(BASE + "#" + "x" * (96 * 1024 - len(BASE) - 2) + "\n")  # control: exactly 96 KiB


def test_line_of_falls_back_to_the_enclosing_field():
    lines = {"a": 1, "a.b": 2, "a.b[0]": 3}
    assert yamlfile.line_of("a.b[0].c", lines) == 3 and yamlfile.line_of("a.x", lines) == 1
    assert yamlfile.line_of("z", lines) is None and yamlfile.line_of("", lines) is None
