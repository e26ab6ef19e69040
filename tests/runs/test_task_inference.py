"""The task of a csv/npz dataset, inferred from its target and said out loud; npz image datasets."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from driftlab.runs import datasets
from driftlab.config import DatasetConfig, ExperimentConfig
from driftlab.runs.datasets import MAX_INFERRED_CLASSES, DatasetError, infer_task, make_split, task_of
from driftlab.runs.models import accepts_input_shape


def _write_csv(path, x: np.ndarray, y, target: str = "y") -> str:
    cols = [f"f{i}" for i in range(x.shape[1])]
    lines = [",".join(cols + [target])]
    lines += [",".join([f"{v:.5f}" for v in row] + [str(label)]) for row, label in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _diabetes_csv(tmp_path) -> str:
    """sklearn's diabetes data: 442 rows, an integer-valued target with 214 distinct values."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    assert len(np.unique(y)) == 214 and np.all(y == np.round(y))
    return _write_csv(tmp_path / "diabetes.csv", x, [f"{v:.1f}" for v in y])  # "151.0": whole numbers


def _experiment(dataset: dict) -> ExperimentConfig:
    return ExperimentConfig.model_validate({"name": "t", "dataset": dataset})


def test_integer_valued_target_with_many_values_is_regression_and_says_why(tmp_path):
    cfg = DatasetConfig(name="csv", path=_diabetes_csv(tmp_path), target="y")
    inference = infer_task(cfg)
    assert inference.task == "regression" and inference.inferred
    assert inference.reason == f"target 'y' has 214 distinct numeric values, more than {MAX_INFERRED_CLASSES} " \
                               "for class labels"
    assert inference.sentence().startswith("inferred regression: target 'y' has 214 distinct numeric values")
    assert inference.sentence().endswith("(set dataset.task to override)")
    config = _experiment(cfg.model_dump())
    assert config.task == task_of(cfg) == "regression" and config.metric == "rmse"
    assert config.direction == "minimize"
    split = make_split(cfg, 0)
    assert split.task == "regression" and split.n_classes == 0 and split.train.y.dtype == np.float32


def test_float_target_is_regression(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    cfg = DatasetConfig(name="csv", path=_write_csv(tmp_path / "f.csv", x, [f"{v:.3f}" for v in x[:, 0] * 2]),
                        target="y")
    inference = infer_task(cfg)
    assert inference.task == "regression" and "not all whole numbers" in inference.reason
    assert make_split(cfg, 0).task == "regression"


def test_three_integer_classes_are_classification(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 2))
    cfg = DatasetConfig(name="csv", path=_write_csv(tmp_path / "c.csv", x, [f"{i % 3}.0" for i in range(90)]),
                        target="y")
    inference = infer_task(cfg)
    assert inference.task == "classification"
    assert inference.reason == "target 'y' has 3 distinct whole-number values, each in 2+ rows: class labels"
    assert _experiment(cfg.model_dump()).metric == "accuracy"
    split = make_split(cfg, 0)
    assert split.n_classes == 3


def test_few_values_but_single_rows_are_regression(tmp_path):
    rng = np.random.default_rng(0)
    y = [i % 15 for i in range(25)]  # 15 distinct values, 5 of them in one row only
    cfg = DatasetConfig(name="csv", path=_write_csv(tmp_path / "s.csv", rng.normal(size=(25, 2)), y), target="y")
    inference = infer_task(cfg)
    assert inference.task == "regression"
    assert "15 distinct whole-number values, 5 of them in a single row" in inference.reason


def test_text_labels_are_classes(tmp_path):
    rng = np.random.default_rng(0)
    names = ["setosa", "versicolor", "virginica"]
    y = [names[i % 3] for i in range(60)]
    cfg = DatasetConfig(name="csv", path=_write_csv(tmp_path / "t.csv", rng.normal(size=(60, 2)), y,
                                                    target="species"), target="species")
    inference = infer_task(cfg)
    assert inference.task == "classification"
    assert inference.reason == "target 'species' holds text labels (3 distinct, e.g. 'setosa')"
    split = make_split(cfg, 0)
    assert split.task == "classification" and split.n_classes == 3 and split.n_features == 2
    assert split.train.y.dtype.kind == "i" and set(np.unique(split.train.y)) == {0, 1, 2}  # sorted names → 0..2
    assert datasets.data_fingerprint(cfg)  # text labels hash too


def test_explicit_classification_of_a_continuous_target_is_refused(tmp_path):
    cfg = DatasetConfig(name="csv", path=_diabetes_csv(tmp_path), target="y", task="classification")
    with pytest.raises(DatasetError) as err:
        make_split(cfg, 0)
    msg = str(err.value)
    assert msg.startswith("dataset.task is classification, but target 'y' has 214 distinct values")
    assert "set dataset.task: regression, or bin the target into classes" in msg
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    floats = DatasetConfig(name="csv", path=_write_csv(tmp_path / "f.csv", x, [f"{v:.3f}" for v in x[:, 0]]),
                           target="y", task="classification")
    with pytest.raises(DatasetError, match=r"dataset.task is classification, but target 'y' has 60 distinct "
                                           r"values, not all whole numbers .*bin the target into classes"):
        make_split(floats, 0)


def test_explicit_regression_of_text_labels_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    path = _write_csv(tmp_path / "t.csv", rng.normal(size=(40, 2)), ["a", "b"] * 20)
    with pytest.raises(DatasetError, match="dataset.task is regression, but target 'y' holds text labels"):
        make_split(DatasetConfig(name="csv", path=path, target="y", task="regression"), 0)


def test_explicit_task_and_built_in_datasets_are_not_inferred():
    assert infer_task(DatasetConfig(name="digits")) == datasets.TaskInference(
        "classification", "built-in dataset 'digits'", False)
    assert infer_task(DatasetConfig(name="synthetic-regression")).task == "regression"
    assert not infer_task(DatasetConfig(name="npz", path="/nonexistent.npz", task="regression")).inferred


def test_inference_is_cached_per_file_version(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    path = tmp_path / "c.csv"
    cfg = DatasetConfig(name="csv", path=_write_csv(path, x, [i % 2 for i in range(40)]), target="y")
    reads = []
    real = datasets.load_arrays
    monkeypatch.setattr(datasets, "load_arrays", lambda c: reads.append(c) or real(c))
    assert infer_task(cfg).task == "classification"
    for _ in range(5):
        assert _experiment(cfg.model_dump()).task == "classification"
    assert len(reads) == 1, "one read of the file, however many callers ask"
    _write_csv(path, x, [f"{v:.3f}" for v in x[:, 0]])  # a new version (other size, other mtime)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    assert infer_task(cfg).task == "regression" and len(reads) == 2


def test_fingerprints_change_only_for_files_that_were_trained_as_the_wrong_task(tmp_path):
    import hashlib

    def plain(cfg):  # the digest before task inference
        x, y = datasets.load_arrays(cfg)
        return hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()[:16]

    rng = np.random.default_rng(0)
    classes = DatasetConfig(name="csv", target="y", path=_write_csv(tmp_path / "c.csv", rng.normal(size=(40, 2)),
                                                                    [i % 2 for i in range(40)]))
    assert datasets.data_fingerprint(classes) == plain(classes), "run keys of classification files are kept"
    continuous = DatasetConfig(name="csv", path=_diabetes_csv(tmp_path), target="y")
    assert datasets.data_fingerprint(continuous) != plain(continuous), \
        "records trained as classification before inference are not resumed as regression runs"


def test_validate_prints_the_inferred_task(tmp_path):
    _diabetes_csv(tmp_path)
    (tmp_path / "exp.yaml").write_text(textwrap.dedent("""\
        name: diabetes
        dataset: {name: csv, path: diabetes.csv, target: y}
        model: {epochs: 1}
        seeds: {init: [0], shuffle: [0], split: [0], repeats: 1, deterministic: [true]}
        profiles: {reference: cpu-default, pools: [{name: cpu-default}]}
        """))
    env = {**os.environ, "DRIFTLAB_HOME": str(tmp_path / "home")}
    env.pop("DRIFTLAB_DB_URL", None)
    proc = subprocess.run([sys.executable, "-m", "driftlab", "validate", "exp.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (f"  task: regression (inferred: target 'y' has 214 distinct numeric values, more than "
            f"{MAX_INFERRED_CLASSES} for class labels; set dataset.task to override)\n") in proc.stdout
    assert "regression, metric rmse" in proc.stdout


def test_validate_with_explicit_task_prints_no_inference(tmp_path):
    _diabetes_csv(tmp_path)
    (tmp_path / "exp.yaml").write_text(textwrap.dedent("""\
        name: diabetes
        dataset: {name: csv, path: diabetes.csv, target: y, task: classification}
        profiles: {reference: cpu-default, pools: [{name: cpu-default}]}
        """))
    from driftlab import cli

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = cli.main(["validate", "exp.yaml"])
    finally:
        os.chdir(cwd)
    assert code == cli.EXIT_BAD_INPUT


# -- npz: images, text labels, arrays that are not numbers ---------------------------------------------

def _digits_images(tmp_path, n: int | None = None) -> str:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    n = n or len(x)
    path = tmp_path / "digits_images.npz"
    np.savez(path, x=(x[:n] / 16.0).reshape(n, 8, 8, 1).astype(np.float32), y=y[:n])
    return str(path)


def test_npz_images_keep_their_shape(tmp_path):
    cfg = DatasetConfig(name="npz", path=_digits_images(tmp_path))
    assert infer_task(cfg).task == "classification"
    a, b = make_split(cfg, 0), make_split(cfg, 1)
    assert a.input_shape == (8, 8, 1) and a.n_features == 64 and a.n_classes == 10
    assert a.train.x.shape[1:] == a.eval.x.shape[1:] == (8, 8, 1)
    np.testing.assert_array_equal(a.eval.x, b.eval.x)  # the evaluation inputs do not move with the split seed
    np.testing.assert_array_equal(a.eval.y, b.eval.y)
    assert not np.array_equal(a.train.y, b.train.y)
    # Standardized per position, exactly as the same pixels in 2-D (the built-in digits dataset).
    flat = make_split(DatasetConfig(name="digits"), 0)
    np.testing.assert_allclose(a.eval.x.reshape(len(a.eval.x), 64), flat.eval.x, atol=1e-6)
    fp = datasets.data_fingerprint(cfg)
    np.savez(tmp_path / "flat.npz", x=np.load(cfg.path)["x"].reshape(-1, 64), y=np.load(cfg.path)["y"])
    assert fp != datasets.data_fingerprint(DatasetConfig(name="npz", path=str(tmp_path / "flat.npz"))), \
        "the same bytes in another shape are other data"


def test_npz_text_labels_are_classes(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=(40, 3)), y=np.array(["cat", "dog"] * 20))
    cfg = DatasetConfig(name="npz", path=str(path))
    assert infer_task(cfg).reason == "target array 'y' holds text labels (2 distinct, e.g. 'cat')"
    assert make_split(cfg, 0).n_classes == 2


@pytest.mark.parametrize("x, needle", [
    (np.array([["a", "b"]] * 30), r"array 'x' in '.*x.npz' is not numeric \(dtype <U1\); features must be numbers"),
    (np.array([[1, "b"]] * 30, dtype=object), r"array 'x' in '.*x.npz' holds Python objects \(dtype object\).*"
                                                r"x.astype\('float32'\)"),
])
def test_npz_non_numeric_x_is_refused(tmp_path, x, needle):
    path = tmp_path / "x.npz"
    np.savez(path, x=x, y=np.arange(30) % 2)
    with pytest.raises(DatasetError, match=needle):
        make_split(DatasetConfig(name="npz", path=str(path)), 0)


def test_npz_single_array_file_is_refused(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((30, 2)))
    with pytest.raises(DatasetError, match="holds a single array, not an .npz archive"):
        make_split(DatasetConfig(name="npz", path=str(path)), 0)


def test_builders_get_input_shape_only_when_they_take_it():
    def classic(hparams, *, n_features, n_outputs, task):
        pass

    def shaped(hparams, *, n_features, n_outputs, task, input_shape):
        pass

    def anything(hparams, **kwargs):
        pass

    assert not accepts_input_shape(classic)
    assert accepts_input_shape(shaped) and accepts_input_shape(anything)
    assert not accepts_input_shape(len)  # no readable signature: classic arguments only


CNN_BUILDER = '''
def cnn(hparams, *, n_features, n_outputs, task, input_shape):
    import keras

    if tuple(input_shape) != (8, 8, 1) or n_features != 64:
        raise ValueError(f"got input_shape={input_shape}, n_features={n_features}")
    return keras.Sequential([keras.Input(input_shape), keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(n_outputs, activation="softmax")])


def classic(hparams, *, n_features, n_outputs, task):
    import keras

    return keras.Sequential([keras.Input((n_features,)), keras.layers.Dense(n_outputs, activation="softmax")])
'''


@pytest.mark.slow
def test_training_on_npz_images(tmp_path, monkeypatch):
    from driftlab.config import ProfileConfig
    from driftlab.runs.executor import Worker
    from driftlab.config.profiles import profile_json
    from driftlab.runs.spec import RunSpec

    (tmp_path / "image_builders.py").write_text(CNN_BUILDER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    profile = ProfileConfig(name="cpu-default")
    dataset = DatasetConfig(name="npz", path=_digits_images(tmp_path, 300)).model_dump(mode="json")
    base = RunSpec(experiment="t", campaign="c", dataset=dataset, data_digest="d", builder="image_builders:cnn",
                   hparams={}, epochs=1, batch_size=64, init_seed=0, shuffle_seed=0, split_seed=0, repeat=0,
                   deterministic=True, profile=profile_json(profile))
    worker = Worker(profile)
    try:
        cnn = worker.run(base)
        assert cnn["status"] == "ok", cnn.get("error")
        assert cnn["predictions"].shape == (60, 10)
        assert cnn["n_params"] == 3 * 3 * 4 + 4 + 6 * 6 * 4 * 10 + 10
        classic = worker.run(dataclasses.replace(base, builder="image_builders:classic"))
        assert classic["status"] == "ok", classic.get("error")  # a builder without input_shape sees rows of 64
        assert classic["n_params"] == 64 * 10 + 10
        mlp = [worker.run(dataclasses.replace(base, builder="mlp", hparams={"units": 8})) for _ in range(2)]
        assert all(r["status"] == "ok" for r in mlp), [r.get("error") for r in mlp]
        assert mlp[0]["n_params"] == 64 * 8 + 8 + 8 * 10 + 10  # the built-in MLP flattens the images
        assert mlp[1]["timings"]["trace_reused"], "the traced trainer is reused for 4-D inputs too"
        assert mlp[0]["weights_digest"] == mlp[1]["weights_digest"]
    finally:
        worker.close()
