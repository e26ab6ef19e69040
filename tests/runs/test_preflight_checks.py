"""The checks before any training: check points, the mlp's rules, memory, and the builder check itself.

The builder check's child (``build_check.answer``) runs here in-process on user modules written
into a temporary folder; the real child process and the CLI are in tests/reliability/test_preflight.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from driftlab.config import load_config_text
from driftlab.config.folders import Mount
from driftlab.runs import build_check, preflight
from driftlab.runs.build_check import BuilderRefused, Shapes, check_builder_name
from driftlab.runs.hparam_points import HyperparameterError, Point, check_mlp, mlp_parameters, points

BASE = "name: x\ndataset: {name: digits}\nprofiles: {pools: [{name: cpu-default}]}\n"


def config(extra: str = ""):
    return load_config_text(BASE + extra)


# -- check points ------------------------------------------------------------------------------------------------
def test_points_are_the_low_and_high_ends_then_each_middle_choice():
    found = points(config("model: {hyperparameters: {layers: 2}}\n"
                          "search_space:\n"
                          "  units: {type: int, low: 8, high: 100, step: 8}\n"
                          "  dropout: {type: float, low: 0.0, high: 0.5}\n"
                          "  activation: {type: categorical, choices: [relu, tanh, gelu, elu]}\n"
                          "tuning: {trials: 2}\n"))
    assert [p.hparams for p in found] == [
        {"layers": 2, "units": 8, "dropout": 0.0, "activation": "relu"},
        {"layers": 2, "units": 96, "dropout": 0.5, "activation": "elu"},  # 100 is off the step grid: 96
        {"layers": 2, "units": 8, "dropout": 0.0, "activation": "tanh"},
        {"layers": 2, "units": 8, "dropout": 0.0, "activation": "gelu"},
    ]
    assert found[1].field_of("units") == "search_space.units" and found[1].field_of("layers") == \
        "model.hyperparameters.layers"
    assert "units=96 (search_space.units (its high end))" in found[1].describe()


def test_without_a_search_space_or_with_an_existing_study_only_the_fixed_values_are_a_point():
    assert [p.hparams for p in points(config("model: {hyperparameters: {units: 4}}\n"))] == [{"units": 4}]
    study = config("tuning: {study: s, storage_env: OPTUNA_STORAGE}\n")
    assert [p.hparams for p in points(study)] == [{}]


def test_many_choices_are_capped():
    choices = ", ".join(f"c{i}" for i in range(20))
    found = points(config(f"search_space: {{tag: {{type: categorical, choices: [{choices}]}}}}\ntuning: {{trials: 2}}\n"))
    assert len(found) == 6 and found[0].hparams["tag"] == "c0" and found[1].hparams["tag"] == "c19"


# -- the mlp's rules ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hparams, field, message", [
    ({"unitz": 8}, "model.hyperparameters.unitz", "did you mean 'units'"),
    ({"units": 0}, "model.hyperparameters.units", "whole number of units >= 1"),
    ({"units": [16, 0]}, "model.hyperparameters.units", "or a list of them"),
    ({"units": True}, "model.hyperparameters.units", "whole number"),
    ({"layers": -1}, "model.hyperparameters.layers", ">= 0"),
    ({"dropout": 1.0}, "model.hyperparameters.dropout", "not including"),
    ({"learning_rate": 0}, "model.hyperparameters.learning_rate", "> 0"),
    ({"learning_rate": "fast"}, "model.hyperparameters.learning_rate", "> 0"),
    ({"optimizer": "lion"}, "model.hyperparameters.optimizer", "adamw"),
    ({"activation": ""}, "model.hyperparameters.activation", "Keras activation"),
])
def test_the_mlp_refuses_names_and_values_it_cannot_build_with(hparams, field, message):
    with pytest.raises(HyperparameterError, match=rf"^{field}: .*{message}"):
        check_mlp(Point(hparams))


def test_the_mlp_accepts_values_just_inside_its_rules_and_names_tuned_fields():
    check_mlp(Point({"units": [1, 3], "layers": 0, "dropout": 0.999, "learning_rate": 1e-9, "optimizer": "sgd",
                     "activation": "tanh"}))
    with pytest.raises(HyperparameterError, match=r"^search_space.dropout: .*got 1.0 \(its high end\)"):
        check_mlp(Point({"dropout": 1.0}, {"dropout": "search_space.dropout (its high end)"}))


@pytest.mark.parametrize("hparams", [{}, {"units": 7, "layers": 3}, {"units": [5, 9]}, {"units": 4, "layers": 0}])
def test_the_mlps_parameter_count_is_the_one_keras_builds(hparams):
    from driftlab.runs.models import build_mlp

    model = build_mlp(hparams, n_features=13, n_outputs=4, task="classification")
    assert mlp_parameters(hparams, n_features=13, n_outputs=4) == model.count_params()


# -- memory ------------------------------------------------------------------------------------------------------
def test_memory_just_under_what_this_process_may_use_is_accepted_just_over_refused(monkeypatch):
    cfg = config()
    shapes = Shapes((1000,), "regression", 0)
    need, _, _ = preflight.memory_needed(10_000, 1000, 5000)
    monkeypatch.setattr(preflight, "available_memory", lambda: (need, "MemAvailable in /proc/meminfo"))
    assert preflight.check_memory(cfg, shapes, 10_000, 5000, "model.builder") == need
    with pytest.raises(preflight.NotEnoughMemory, match=r"^dataset.path: one training process would need about"):
        preflight.check_memory(cfg, shapes, 10_001, 5000, "model.builder")
    with pytest.raises(preflight.NotEnoughMemory, match=r"^search_space.units: .* the model 100,000,000 param"):
        preflight.check_memory(cfg, shapes, 10, 100_000_000, "search_space.units")


def test_the_data_copies_cover_the_real_peak_of_making_a_split():
    # VmHWM, the peak of this process's own memory (ru_maxrss would carry over the test session's, by fork).
    code = textwrap.dedent("""
        from driftlab.config import DatasetConfig
        from driftlab.runs import datasets

        def peak():
            return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))

        base = peak()
        cfg = DatasetConfig(name="synthetic-regression", n_samples=200_000, n_features=50)
        datasets.make_split(cfg, 0)
        datasets.data_fingerprint(cfg)
        print((peak() - base) * 1024 / (200_000 * 50 * 4))
    """)
    copies = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                  timeout=120).stdout)
    assert 3 < copies <= preflight.DATA_COPIES, f"peak was {copies:.1f} × the float32 array"


def test_a_cgroup_v2_limit_of_this_process_or_above_it_bounds_the_memory(tmp_path):
    (tmp_path / "cgroup").write_text("0::/pod/job\n")
    for folder, limit, used in (("pod", "1000000", "200000"), ("pod/job", "max", "100000")):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "memory.max").write_text(limit + "\n")
        (tmp_path / folder / "memory.current").write_text(used + "\n")
    table = [Mount(str(tmp_path), "cgroup2")]
    assert preflight.cgroup_room(tmp_path / "cgroup", table) == 800_000, "the parent's limit applies"
    (tmp_path / "pod" / "job" / "memory.max").write_text("300000\n")
    assert preflight.cgroup_room(tmp_path / "cgroup", table) == 200_000, "the tighter of the two"
    (tmp_path / "cgroup").write_text("4:memory:/x\n")
    assert preflight.cgroup_room(tmp_path / "cgroup", table) is None, "cgroup v1 only: no v2 limit"
    available, where = preflight.available_memory()
    assert available and available > 0 and where


# -- the builder check -------------------------------------------------------------------------------------------
def test_standard_library_builders_are_refused_by_name_before_any_import():
    for builder in ("os:system", "os.path:join", "subprocess:run", "builtins:eval", "__main__:main"):
        with pytest.raises(BuilderRefused, match=rf"^model.builder: '{builder}' names the Python standard library"):
            check_builder_name(builder)
    check_builder_name("mlp")
    check_builder_name("my_models:build")


USER = '''
import functools
import os
import keras

from os import system


def build(hparams, *, n_features, n_outputs, task):
    return keras.Sequential([keras.Input((n_features,)), keras.layers.Dense(n_outputs, activation="softmax")])


def images(hparams, *, n_features, n_outputs, task, input_shape):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(n_outputs, activation="softmax")])


class Builder(keras.Model):
    def __init__(self, hparams, *, n_features, n_outputs, task):
        super().__init__()
        self.head = keras.layers.Dense(n_outputs, activation="softmax")

    def call(self, x):
        return self.head(x)


def ten_classes(hparams, *, n_features, n_outputs, task):
    return keras.Sequential([keras.Input((n_features,)), keras.layers.Dense(10, activation="softmax")])


def two_outputs(hparams, *, n_features, n_outputs, task):
    inputs = keras.Input((n_features,))
    return keras.Model(inputs, [keras.layers.Dense(n_outputs)(inputs), keras.layers.Dense(1)(inputs)])


def fails_in_call(hparams, *, n_features, n_outputs, task):
    class Boom(keras.layers.Layer):
        def call(self, x):
            raise RuntimeError("boom on a batch")

    return keras.Sequential([keras.layers.Dense(4), Boom()])


def positional_only(hparams, /):
    return None


partial_build = functools.partial(build)
shell = os.system
'''


@pytest.fixture
def user(tmp_path, monkeypatch):
    name = f"preflight_user_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER)
    (tmp_path / f"{name}_broken.py").write_text("import keras\n\nraise ImportError('no GPU libraries here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in (name, f"{name}_broken"):
        sys.modules.pop(module, None)


def ask(builder: str, *, task: str = "classification", n_classes: int = 10, input_shape=(64,), build=True) -> dict:
    return build_check.answer({"builder": builder, "input_shape": list(input_shape), "task": task,
                               "n_classes": n_classes, "points": [{"hparams": {}, "origin": {}}], "build": build})


@pytest.mark.parametrize("attr, message", [
    ("system", "is a builtin_function_or_method, not a function or class defined in Python"),
    ("shell", "is a builtin_function_or_method"),
    ("partial_build", "is a partial, not a function or class"),
    ("positional_only", "cannot be called as a builder (hparams, *, n_features, n_outputs, task)"),
    ("missing", "has no 'missing'"),
    ("two_outputs", "returns a model with 2 outputs"),
])
def test_objects_that_are_not_builders_are_refused_without_being_called(user, attr, message):
    refused = ask(f"{user}:{attr}")
    assert refused["refused"].startswith("model.builder: ") and message in refused["refused"], refused


def test_functions_and_classes_in_python_source_build_and_their_outputs_are_checked(user):
    assert ask(f"{user}:build") == {"n_params": 650, "outputs": [[2, 10]], "points": 1}
    assert ask(f"{user}:Builder")["outputs"] == [[2, 10]], "a keras.Model subclass called like a builder"
    assert ask(f"{user}:images", input_shape=(8, 8, 1))["outputs"] == [[2, 10]], "it gets input_shape"
    assert ask(f"{user}:build", input_shape=(8, 8, 1))["n_params"] == 650, "images flattened for it, as a run does"
    assert ask(f"{user}:build", n_classes=2)["outputs"] == [[2, 2]]
    assert ask(f"{user}:build", task="regression", n_classes=0)["outputs"] == [[2, 1]], "n_outputs is 1"
    refused = ask(f"{user}:ten_classes", task="regression", n_classes=0)["refused"]
    assert "returns outputs of shape (2, 10) for a batch of 2; regression needs one value per row" in refused
    assert ask(f"{user}:build", build=False) == {"n_params": 0, "outputs": [], "points": 0}, "import only"


def test_a_failure_on_the_dummy_batch_and_at_import_shows_the_users_frame(user, tmp_path):
    refused = ask(f"{user}:fails_in_call")["refused"]
    head, *frames = refused.splitlines()
    # Keras re-raises a layer's exception with its own first line ("Exception encountered when calling ...").
    assert head.startswith(f"model.builder: '{user}:fails_in_call' fails on a batch of shape (2, 64): "
                           "RuntimeError: "), refused
    assert any(f"{user}.py" in f and 'raise RuntimeError("boom on a batch")' in f for f in frames), refused
    refused = ask(f"{user}_broken:build")["refused"]
    assert refused.startswith(f"model.builder: importing '{user}_broken' raised ImportError: no GPU libraries here")
    assert f"{user}_broken.py\", line 3" in refused
