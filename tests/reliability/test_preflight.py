"""``driftlab validate`` catches what ``driftlab run`` would fail on, and ``run`` refuses it before writing anything.

Each case is an experiment a person could write (a builder module beside it, written the way a
Keras user writes one) in a scratch folder outside the checkout, run through real
``python -m driftlab validate`` and ``run`` processes from that folder: both exit 2, the message
names the field and no traceback is shown, and the folder holds afterwards exactly what it held
before (no home folder, no results database, no ``__pycache__`` of the builder). The controls: a
valid user builder and a quickstart-like experiment validate; each limit's value just under it is
accepted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from driftlab.contracts import MAX_PARAMS_TEXT, MAX_TASK_ARGUMENT
from driftlab.runs import preflight
from support.faults import figure

BASE = {
    "name": "preflight",
    "dataset": {"name": "digits", "eval_fraction": 0.25, "val_fraction": 0.2},
    "model": {"builder": "mlp", "epochs": 1, "batch_size": 64, "hyperparameters": {"units": 16}},
    "seeds": {"init": [0, 1], "shuffle": [0], "split": [0], "repeats": 1, "deterministic": [True]},
    "profiles": {"reference": "cpu-default", "pools": [{"name": "cpu-default"}]},
    "tolerances": {"max_disagreement": 0.5},
}
TUNED = {"search_space": {"learning_rate": {"type": "float", "low": 0.001, "high": 0.01, "log": True},
                          "units": {"type": "int", "low": 8, "high": 32}},
         "tuning": {"trials": 2, "workers": 1}}

USER_MODELS = '''
import keras
from os import system  # an alias of os.system: a builtin, not a builder
from subprocess import run  # a standard-library function


def build(hparams, *, n_features, n_outputs, task):
    model = keras.Sequential([
        keras.Input((n_features,)),
        keras.layers.Dense(hparams.get("units", 16), activation="relu"),
        keras.layers.Dense(n_outputs, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def broken(hparams, *, n_features, n_outputs, task):
    width = hparams.get("units", 16) - 100
    if width <= 0:
        raise ValueError("width must be positive")
    return build(hparams, n_features=n_features, n_outputs=n_outputs, task=task)


def three_classes(hparams, *, n_features, n_outputs, task):
    return keras.Sequential([keras.Input((n_features,)), keras.layers.Dense(3, activation="softmax")])


def regression_head(hparams, *, n_features, n_outputs, task):
    return keras.Sequential([keras.Input((n_features,)), keras.layers.Dense(n_outputs)])
'''


def experiment(**changes) -> dict:
    config = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


# ``python -m driftlab`` that writes its own peak memory (VmHWM: this process's, unlike ru_maxrss, which a
# child inherits from the test session through fork) to the file PEAK_FILE names, as it exits.
MEASURED = ("import atexit, os, runpy, sys\n"
            "def peak():\n"
            "    with open('/proc/self/status') as f, open(os.environ['PEAK_FILE'], 'w') as out:\n"
            "        out.write(next(l.split()[1] for l in f if l.startswith('VmHWM:')))\n"
            "atexit.register(peak)\n"
            "sys.argv = ['driftlab', *sys.argv[1:]]\n"
            "runpy.run_module('driftlab', run_name='__main__', alter_sys=True)\n")


def driftlab(folder: Path, *args: str, timeout: int = 300) -> tuple[subprocess.CompletedProcess, float, int]:
    """A real driftlab process from ``folder``: (result, seconds, its peak memory in KiB)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DRIFTLAB_DB_URL", "DRIFTLAB_HOME", "DRIFTLAB_WHERE")}
    with tempfile.TemporaryDirectory() as scratch:
        env["PEAK_FILE"] = str(Path(scratch) / "peak")
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", MEASURED, *args], cwd=folder, env=env, capture_output=True,
                              text=True, timeout=timeout)
        seconds = time.monotonic() - start
        peak = int((Path(scratch) / "peak").read_text())
    return proc, seconds, peak


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "my-project"
    root.mkdir()
    (root / "user_models.py").write_text(USER_MODELS)
    return root


def assert_refused(folder: Path, config: dict, field: str, *, home: bool = True, also: str = "") -> tuple[float, int]:
    """validate and run exit 2 naming ``field``; the folder is unchanged. Returns run's (seconds, peak KiB)."""
    (folder / "exp.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    before = listing(folder)
    checked, _, _ = driftlab(folder, "validate", "exp.yaml")
    out = checked.stdout + checked.stderr
    assert checked.returncode == 2, f"validate accepted it:\n{out[-3000:]}"
    assert field in checked.stderr and also in checked.stderr, checked.stderr[-3000:]
    assert "Traceback" not in out
    ran, seconds, peak = driftlab(folder, "run", "exp.yaml", *(["--home", "home"] if home else []))
    out = ran.stdout + ran.stderr
    assert ran.returncode == 2 and field in ran.stderr, out[-3000:]
    assert "Traceback" not in out
    assert listing(folder) == before, f"run wrote {sorted(listing(folder) - before)}"
    return seconds, peak


def assert_valid(folder: Path, config: dict) -> str:
    (folder / "exp.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    before = listing(folder)
    checked, _, _ = driftlab(folder, "validate", "exp.yaml")
    assert checked.returncode == 0, (checked.stdout + checked.stderr)[-3000:]
    assert listing(folder) == before, "validate wrote something"
    return checked.stdout


# -- builders ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("builder", ["os:system", "subprocess:run", "builtins:eval"])
def test_a_standard_library_callable_is_refused_before_anything_is_imported(folder, builder, request):
    figure(request, "validate catches what run would fail on: a standard-library callable as model.builder", cases=1)
    assert_refused(folder, experiment(model={"builder": builder}), "model.builder", also="standard library")


@pytest.mark.parametrize("name, also", [("system", "not a function or class defined in Python"),
                                        ("run", "subprocess.run' of the Python standard library")])
def test_a_standard_library_callable_imported_into_a_user_module_is_never_called(folder, name, also, request):
    figure(request, "validate catches what run would fail on: a user module's alias of os.system/subprocess.run",
           cases=1)
    assert_refused(folder, experiment(model={"builder": f"user_models:{name}"}), "model.builder", also=also)


def test_a_builder_module_that_does_not_exist_is_refused(folder, request):
    figure(request, "validate catches what run would fail on: a builder module that does not exist", cases=1)
    assert_refused(folder, experiment(model={"builder": "no_such_models:build"}), "model.builder",
                   also="cannot import module 'no_such_models'")


@pytest.mark.slow
def test_a_builder_that_raises_is_refused_with_the_users_own_frame(folder, request):
    figure(request, "validate catches what run would fail on: a builder that raises", cases=1)
    assert_refused(folder, experiment(model={"builder": "user_models:broken"}), "model.builder",
                   also='user_models.py", line 20, in broken: raise ValueError("width must be positive")')


@pytest.mark.slow
def test_a_model_whose_outputs_do_not_fit_the_classes_is_refused(folder, request):
    figure(request, "validate catches what run would fail on: outputs that do not fit the task", cases=1)
    assert_refused(folder, experiment(model={"builder": "user_models:three_classes"}), "model.builder",
                   also="shape (2, 3) for a batch of 2; classification needs one column per class: a last layer of 10")


@pytest.mark.slow
def test_a_classifier_head_on_a_regression_target_is_refused_and_a_regression_head_accepted(folder, request):
    figure(request, "validate catches what run would fail on: outputs that do not fit the task", cases=2)
    dataset = {"name": "synthetic-regression", "n_samples": 200, "n_features": 5}
    assert_refused(folder, experiment(model={"builder": "user_models:three_classes"}, dataset=dataset),
                   "model.builder", also="regression needs one value per row")
    out = assert_valid(folder, experiment(model={"builder": "user_models:regression_head"}, dataset=dataset))
    assert "outputs (2, 1)" in out, out


# -- the built-in mlp's hyperparameters --------------------------------------------------------------------------
MLP_CASES = [
    ({"model": {"hyperparameters": {"unitz": 16}}}, "model.hyperparameters.unitz", "did you mean 'units'"),
    ({"search_space": {"lr": {"type": "float", "low": 0.001, "high": 0.1}}, "tuning": {"trials": 2}},
     "search_space.lr", "has no hyperparameter 'lr'"),
    ({"search_space": {"dropout": {"type": "float", "low": 0.0, "high": 1.0}}, "tuning": {"trials": 2}},
     "search_space.dropout", "its high end"),
    ({"search_space": {"units": {"type": "int", "low": 0, "high": 8}}, "tuning": {"trials": 2}},
     "search_space.units", "its low end"),
    ({"model": {"hyperparameters": {"optimizer": "lion"}}}, "model.hyperparameters.optimizer", "'adam'"),
    ({"model": {"hyperparameters": {"learning_rate": -0.1}}}, "model.hyperparameters.learning_rate", "> 0"),
]


@pytest.mark.parametrize("changes, field, also", MLP_CASES, ids=[c[1] for c in MLP_CASES])
def test_unknown_or_invalid_mlp_hyperparameters_are_refused(folder, changes, field, also, request):
    figure(request, "validate catches what run would fail on: unknown or invalid mlp hyperparameters", cases=1)
    assert_refused(folder, experiment(**changes), field, also=also)


@pytest.mark.slow
def test_an_activation_keras_does_not_know_is_refused_and_the_one_just_inside_is_accepted(folder, request):
    figure(request, "validate catches what run would fail on: an mlp activation Keras does not know", cases=2)
    space = {"activation": {"type": "categorical", "choices": ["relu", "tanh", "nope", "gelu"]}}
    assert_refused(folder, experiment(search_space=space, tuning={"trials": 2}), "search_space.activation",
                   also="'nope' is not a Keras activation")
    # Control: every choice known, dropout just under 1, units at 1: built at each point and accepted.
    space = {"activation": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]},
             "dropout": {"type": "float", "low": 0.0, "high": 0.99}, "units": {"type": "int", "low": 1, "high": 8}}
    out = assert_valid(folder, experiment(search_space=space, tuning={"trials": 2}))
    assert "built on a dummy batch at 3 hyperparameter point(s)" in out, out


# -- folders -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("local_dir, also", [("exp.yaml", "is not a folder"), ("exp.yaml/home", "is inside"),
                                             ("/proc/driftlab-home", "proc filesystem"),
                                             ("/sys/driftlab-home", "sysfs filesystem")],
                         ids=["a regular file", "inside a regular file", "/proc", "/sys"])
def test_a_home_folder_that_cannot_hold_files_is_refused(folder, local_dir, also, request):
    figure(request, "validate catches what run would fail on: storage.local_dir in a file or on /proc, /sys",
           cases=1)
    assert_refused(folder, experiment(storage={"local_dir": local_dir}), "storage.local_dir", home=False, also=also)


# -- memory ------------------------------------------------------------------------------------------------------
def test_a_dataset_no_process_could_hold_is_refused_at_once(folder, request):
    row = figure(request, "validate catches what run would fail on: a 10^7 × 10^4 synthetic dataset (745 GiB)",
                 cases=1)
    big = {"name": "synthetic-regression", "n_samples": 10_000_000, "n_features": 10_000}
    seconds, peak = assert_refused(folder, experiment(dataset=big), "dataset.n_samples", also="TiB of memory")
    assert seconds < 20 and peak < 512 * 1024, "refused before any data exists"
    row["note"] = f"run refused in {seconds:.1f} s, peak memory {peak / 1024:.0f} MiB (the data would take 745 GiB)"


def test_a_dataset_just_under_the_memory_this_process_may_use_is_accepted_just_over_refused(folder, request):
    figure(request, "validate catches what run would fail on: memory just over / just under the limit", cases=2)
    available, _ = preflight.available_memory()
    per_row = 10_000 * preflight.FLOAT_BYTES * preflight.DATA_COPIES
    over = {"name": "synthetic-regression", "n_samples": min(10_000_000, int(available * 1.25) // per_row),
            "n_features": 10_000}
    if over["n_samples"] * per_row <= available:
        pytest.skip("this machine holds more than the largest synthetic dataset the schema allows")
    assert_refused(folder, experiment(dataset=over), "dataset.n_samples")
    under = {**over, "n_samples": int(available * 0.6) // per_row}  # MemAvailable moves a little between processes
    out = assert_valid(folder, experiment(dataset=under))
    assert "memory: about" in out


# -- what a task receives as its argument ------------------------------------------------------------------------
def largest(fits, low: int, high: int) -> int:
    """The largest n in [low, high) with ``fits(n)``; ``fits(low)`` holds and ``fits(high)`` does not."""
    assert fits(low) and not fits(high), "control: the search brackets the limit"
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def _fits(config: dict, campaign: str | None) -> bool:
    from driftlab.config import load_config_text
    from driftlab.contracts import TooLargeForTask
    from driftlab.launch import task_args

    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    try:
        task_args.check(load_config_text(text), text, home=Path(config["storage"]["local_dir"]), campaign=campaign,
                        source="exp.yaml", home_field="storage.local_dir")
    except TooLargeForTask:
        return False
    return True


def test_an_experiment_whose_task_argument_would_pass_128_kib_is_refused_just_under_accepted(folder, request):
    figure(request, "validate catches what run would fail on: a task argument over 128 KiB", cases=2)
    # 64 profiles (64 node summaries reach aggregate-drift) and a description in non-ASCII text
    # (2 bytes in the file, 6 JSON-escaped): the file stays within the loader's own limits.
    pools = [{"name": "cpu-default"}] + [{"name": f"cpu-{i:03d}"} for i in range(63)]

    def config(chars: int) -> dict:
        return experiment(description="é" * chars, profiles={"reference": "cpu-default", "pools": pools},
                          storage={"local_dir": str(folder / "home")}, **TUNED)

    over = largest(lambda n: _fits(config(n), "default"), 1000, 20_000) + 1  # run's view: campaign 'default'
    under = largest(lambda n: _fits(config(n), None), 1000, 20_000)  # validate's: any campaign
    assert 0 < over - under < 50, "the limit is a sharp line"
    assert_refused(folder, config(over), "experiment file 'exp.yaml'", home=False,
                   also=f"more than the {MAX_TASK_ARGUMENT:,} bytes Linux allows one argument")
    assert_valid(folder, config(under))


def test_many_profiles_whose_summaries_would_overflow_aggregate_drift_are_refused(folder, request):
    figure(request, "validate catches what run would fail on: too many profiles for aggregate-drift's argument",
           cases=1)
    pools = [{"name": "cpu-default"}] + [{"name": f"cpu-{i:03d}"} for i in range(400)]
    assert_refused(folder, experiment(profiles={"reference": "cpu-default", "pools": pools}), "profiles.pools",
                   also="task 'aggregate-drift'")


@pytest.mark.slow
def test_a_categorical_choice_too_long_to_travel_is_refused_just_under_accepted(folder, request):
    figure(request, "validate catches what run would fail on: tuned parameters over their 3 KiB share", cases=2)
    from driftlab.config import load_config_text
    from driftlab.launch.task_args import params_share

    def config(n: int) -> dict:
        space = {"tag": {"type": "categorical", "choices": ["a", "x" * n]}}
        return experiment(model={"builder": "user_models:build"}, search_space=space, tuning={"trials": 2})

    def fits(n: int) -> bool:
        return params_share(load_config_text(yaml.safe_dump(config(n))))[0] <= MAX_PARAMS_TEXT

    n = largest(fits, 10, 10_000)
    assert_refused(folder, config(n + 1), "search_space.tag", also=f"more than the {MAX_PARAMS_TEXT:,} allowed")
    assert_valid(folder, config(n))


# -- the controls ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_valid_user_builder_and_the_quickstart_validate(folder, request):
    figure(request, "validate catches what run would fail on: controls (a user builder, the quickstart)", cases=2)
    out = assert_valid(folder, experiment(model={"builder": "user_models:build", "hyperparameters": {"units": 8}},
                                          **TUNED))
    assert "model: 'user_models:build' built on a dummy batch at 2 hyperparameter point(s), outputs (2, 10)" in out
    quickstart = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
    out = assert_valid(folder, yaml.safe_load(quickstart.read_text()))
    assert "valid" in out and "model: 'mlp' built" in out
