"""Hyperparameters keep their declared types across the KFP boundary (driftlab.config.params)."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format, struct_pb2

from driftlab.config import params
from driftlab import stages
from driftlab.config import load_config_text

CONFIG = """\
name: typed
dataset: {name: digits}
model:
  builder: mlp
  hyperparameters: {layers: 1, activation: relu}
search_space:
  units: {type: int, low: 8, high: 64}
  learning_rate: {type: float, low: 0.001, high: 0.1, log: true}
  width: {type: categorical, choices: [16, 32, 48.5]}
  act: {type: categorical, choices: [relu, tanh]}
  bias: {type: categorical, choices: [true, false]}
tuning: {trials: 2, workers: 1}
profiles: {pools: [{name: cpu-default}]}
"""


def through_struct(value: dict) -> dict:
    """What a KFP dict parameter becomes: a protobuf Struct, read back."""
    struct = struct_pb2.Struct()
    struct.update(value)
    return json_format.MessageToDict(struct)


def test_a_kfp_struct_really_turns_ints_into_floats():
    # The control: the coercion this module undoes is real.
    back = through_struct({"units": 27, "trials": 6})
    assert back == {"units": 27.0, "trials": 6.0} and type(back["units"]) is float


def test_json_text_survives_a_struct_field_with_every_type():
    config = load_config_text(CONFIG)
    best = {"units": 27, "learning_rate": 0.01, "width": 32, "act": "tanh", "bias": False}
    text = params.encode(best, params.declared_kinds(config))
    item = through_struct({"best_params": text})  # a loop item holding the JSON text
    got = params.hyperparameters(config, item["best_params"])
    assert got == {**best, "layers": 1, "activation": "relu"}
    assert [type(got[k]) for k in ("units", "learning_rate", "width", "act", "bias", "layers")] == \
        [int, float, int, str, bool, int]


def test_a_dict_that_went_through_a_struct_is_typed_again_from_the_declaration():
    config = load_config_text(CONFIG)
    raw = through_struct({"units": 27, "learning_rate": 0.01, "width": 48.5, "act": "relu", "bias": True})
    got = params.decode(config, raw)
    assert type(got["units"]) is int and got["units"] == 27
    assert got["width"] == 48.5 and type(got["bias"]) is bool


def test_kinds_in_the_payload_type_parameters_no_search_space_declares():
    config = load_config_text(CONFIG.replace("search_space:", "search_space:\n  extra_int: {type: int, low: 1, high: 2}"))
    text = params.encode({"filters": 8, "rate": 0.5, "pool": "max"}, {"filters": "int", "rate": "float", "pool": "str"})
    raw = through_struct(json.loads(text))  # even the payload as a dict, floats and all
    got = params.decode(config, raw)
    assert got == {"filters": 8, "rate": 0.5, "pool": "max"} and type(got["filters"]) is int


@pytest.mark.parametrize("raw, message", [
    ({"units": 27.5}, "search_space.units: expected an int"),
    ({"units": True}, "search_space.units: expected an int, got the bool"),
    ({"width": 20}, "search_space.width: 20 is not one of the declared choices"),
    ({"learning_rate": "fast"}, "search_space.learning_rate: expected a number"),
])
def test_values_that_fit_no_declaration_are_refused_by_name(raw, message):
    with pytest.raises(params.ParamsError, match=message):
        params.decode(load_config_text(CONFIG), raw)


def test_node_loop_items_carry_typed_parameters(monkeypatch):
    monkeypatch.delenv("DRIFTLAB_WHERE", raising=False)
    text = CONFIG.replace("pools: [{name: cpu-default}]", "pools: [{name: cpu-default}, {name: cpu-b, intra_op_threads: 1}]")
    items = stages.node_tasks(text, {"units": 27.0, "learning_rate": 0.01, "width": 16.0, "act": "relu",
                                     "bias": True})
    item = through_struct(items[0])
    got = stages.hyperparameters(load_config_text(text), item["best_params"])
    assert type(got["units"]) is int and type(got["width"]) is int


def test_tuning_summary_counts_are_integers_even_after_a_struct():
    summary = through_struct({"best_trial": 1, "n_complete": 6, "n_pruned": 0, "n_failed": 0, "n_unfinished": 0,
                              "best_value": 0.97, "trials_per_worker": [3, 3],
                              "stability": {"k": 5, "spread": 0.01}})
    typed = stages.typed_tuning_summary(summary)
    assert [type(typed[k]) for k in ("best_trial", "n_complete", "n_failed")] == [int, int, int]
    assert typed["trials_per_worker"] == [3, 3] and type(typed["trials_per_worker"][0]) is int
    assert type(typed["stability"]["k"]) is int and type(typed["best_value"]) is float


def test_node_items_and_stage_summaries_get_their_whole_numbers_back(monkeypatch):
    from driftlab.contracts import node_item_from_kfp, stage_summary_from_kfp

    monkeypatch.delenv("DRIFTLAB_WHERE", raising=False)
    text = CONFIG.replace("pools: [{name: cpu-default}]", "pools: [{name: cpu-default}, {name: cpu-b}]")
    item = through_struct(stages.node_tasks(text, {"units": 27})[0])
    assert type(item["shard_count"]) is float, "control: a Struct really made the count a float"
    typed = node_item_from_kfp(item)
    assert [type(typed[k]) for k in ("shard_index", "shard_count", "runs", "accelerator_count")] == [int] * 4
    assert node_item_from_kfp(json.dumps({"profile": "p", "best_params": "{}"}))["shard_count"] == 1
    summary = stage_summary_from_kfp(through_struct({"profile": "p", "planned": 4, "trained": 4, "failed": 0,
                                                     "skipped": 0, "workers": 2, "seconds": 1.5}))
    assert type(summary["planned"]) is int and summary["seconds"] == 1.5
