"""Datasets: a fixed evaluation set, a split chosen by its own seed, clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest

from driftlab.config import DatasetConfig
from driftlab.runs.datasets import DatasetError, data_fingerprint, make_split


def test_digits_eval_set_is_fixed_and_split_seed_moves_only_train_val():
    cfg = DatasetConfig(name="digits", eval_fraction=0.25, val_fraction=0.2)
    a, b = make_split(cfg, 0), make_split(cfg, 1)
    assert a.task == "classification" and a.n_classes == 10 and a.n_features == 64
    assert len(a.eval.x) == round(1797 * 0.25)
    np.testing.assert_array_equal(a.eval.x, b.eval.x)  # same rows, same inputs, bit for bit
    np.testing.assert_array_equal(a.eval.y, b.eval.y)
    assert not np.array_equal(a.train.y, b.train.y), "a different split seed must choose other train rows"
    assert len(a.train.x) + len(a.val.x) + len(a.eval.x) == 1797


def test_split_is_reproducible():
    cfg = DatasetConfig(name="digits")
    a, b = make_split(cfg, 7), make_split(cfg, 7)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.val.y, b.val.y)


def test_synthetic_regression_is_seeded_and_has_ten_features():
    cfg = DatasetConfig(name="synthetic-regression", n_samples=300)
    a, b = make_split(cfg, 0), make_split(cfg, 0)
    assert a.task == "regression" and a.n_features == 10 and a.n_classes == 0
    np.testing.assert_array_equal(a.train.y, b.train.y)
    other = make_split(DatasetConfig(name="synthetic-regression", n_samples=300, eval_seed=1), 0)
    assert data_fingerprint(cfg) != data_fingerprint(DatasetConfig(name="synthetic-regression", n_samples=300,
                                                                   eval_seed=1))
    assert not np.array_equal(a.eval.y, other.eval.y)


def _csv(tmp_path, text):
    path = tmp_path / "data.csv"
    path.write_text(text)
    return str(path)


def test_csv_with_target_column(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["f1,label,f2"] + [f"{rng.normal():.4f},{i % 3},{rng.normal():.4f}" for i in range(60)]
    split = make_split(DatasetConfig(name="csv", path=_csv(tmp_path, "\n".join(rows)), target="label"), 0)
    assert split.task == "classification" and split.n_classes == 3 and split.n_features == 2


def test_npz(tmp_path):
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(80, 4)), y=rng.normal(size=80))
    split = make_split(DatasetConfig(name="npz", path=str(path), task="regression"), 0)
    assert split.n_features == 4 and split.task == "regression"


@pytest.mark.parametrize("text, needle", [
    ("a,b\n" + "1,2\n" * 30, "column 'label' is not in"),
    ("a,label\n" + "x,1\n" * 30, "non-numeric value 'x' in feature column 'a'"),  # text: only the target
    ("a,label\n" + "nan,1\n" * 30, "NaN or infinite"),
    ("a,label\n", "no data rows"),
    ("a,label\n1,2,3\n", "has 3 fields, header has 2"),
])
def test_bad_csv(tmp_path, text, needle):
    cfg = DatasetConfig(name="csv", path=_csv(tmp_path, text), target="label")
    with pytest.raises(DatasetError, match=needle):
        make_split(cfg, 0)


def test_bad_npz(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, features=np.zeros((30, 2)))
    with pytest.raises(DatasetError, match="arrays named 'x' and 'y'"):
        make_split(DatasetConfig(name="npz", path=str(path)), 0)
    np.savez(path, x=np.zeros(30), y=np.zeros(30))
    with pytest.raises(DatasetError, match="one row per example"):
        make_split(DatasetConfig(name="npz", path=str(path)), 0)


def test_missing_file_names_the_field(tmp_path):
    with pytest.raises(DatasetError, match="dataset.path: cannot read"):
        make_split(DatasetConfig(name="csv", path=str(tmp_path / "none.csv"), target="y"), 0)


def test_digits_are_read_without_importing_scikit_learn_and_equal_load_digits(monkeypatch):
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from driftlab.runs import datasets

    x, y = datasets._digits_raw()
    ref_x, ref_y = load_digits(return_X_y=True)
    assert x.dtype == ref_x.dtype and y.dtype == ref_y.dtype
    np.testing.assert_array_equal(x, ref_x)
    np.testing.assert_array_equal(y, ref_y)
    # Where scikit-learn's file cannot be found, load_digits reads it: the same arrays again.
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    fx, fy = datasets._digits_raw()
    np.testing.assert_array_equal(fx, ref_x)
    np.testing.assert_array_equal(fy, ref_y)
    code = ("import sys; from driftlab.config import DatasetConfig; from driftlab.runs.datasets import load_arrays, "
            "data_fingerprint; x, y = load_arrays(DatasetConfig(name='digits')); print(x.shape, "
            "data_fingerprint(DatasetConfig(name='digits')), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == "False", "loading digits imported scikit-learn"
    assert out[-2] == data_fingerprint(DatasetConfig(name="digits"))
