"""Datasets: a fixed evaluation set, and a train/validation split chosen by a seed.

The evaluation set is carved out once (``eval_seed``) and is the same for every
run of an experiment, so predictions of different runs can be compared row by
row. ``split_seed`` only reshuffles which of the remaining rows train and which
validate: it is one of the sources of variation driftlab measures.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from driftlab.config import DatasetConfig


class DatasetError(ValueError):
    """A data file or dataset setting that cannot be used."""


@dataclass(frozen=True)
class Arrays:
    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class Split:
    train: Arrays
    val: Arrays
    eval: Arrays
    task: str
    n_classes: int  # 0 for regression

    @property
    def n_features(self) -> int:
        return int(self.train.x.shape[1])


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int64)


def _synthetic_regression(cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
    # The shape of the classic "inconsistent Keras results" example: a linear
    # target over cfg.n_features features plus Gaussian noise, fully seeded.
    rng = np.random.default_rng(cfg.eval_seed + 7919)
    x = rng.normal(size=(cfg.n_samples, cfg.n_features)).astype(np.float32)
    coef = rng.normal(size=cfg.n_features).astype(np.float32)
    y = x @ coef + 0.5 * np.sin(x[:, 0] * 2.0) + rng.normal(scale=cfg.noise, size=cfg.n_samples)
    return x, y.astype(np.float32)


def _csv(cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
    import csv

    path = Path(cfg.path or "")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise DatasetError(f"dataset.path: cannot read '{path}': {exc.strerror or exc}") from None
    if len(rows) < 2:
        raise DatasetError(f"dataset.path: '{path}' has no data rows (a header and at least one row are needed)")
    header = [h.strip() for h in rows[0]]
    if cfg.target not in header:
        raise DatasetError(f"dataset.target: column '{cfg.target}' is not in '{path}'; "
                           f"columns are: {', '.join(header)}")
    t = header.index(cfg.target)
    feats, labels = [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DatasetError(f"dataset.path: '{path}' line {lineno} has {len(row)} fields, header has {len(header)}")
        try:
            values = [float(v) for v in row]
        except ValueError:
            bad = next(v for v in row if not _is_float(v))
            raise DatasetError(f"dataset.path: '{path}' line {lineno} has a non-numeric value {bad!r}; "
                               "encode categories as numbers first") from None
        labels.append(values[t])
        feats.append(values[:t] + values[t + 1:])
    return np.asarray(feats, dtype=np.float32), np.asarray(labels)


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _npz(cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
    path = Path(cfg.path or "")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data or "y" not in data:
                raise DatasetError(f"dataset.path: '{path}' must hold arrays named 'x' and 'y'; "
                                   f"found: {', '.join(data.files) or 'nothing'}")
            x, y = data["x"], data["y"]
    except (OSError, ValueError) as exc:
        raise DatasetError(f"dataset.path: cannot read '{path}' as .npz: {exc}") from None
    if x.ndim != 2:
        raise DatasetError(f"dataset.path: 'x' in '{path}' must be 2-D (rows, features); got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DatasetError(f"dataset.path: 'y' in '{path}' must be 1-D with one value per row of x; "
                           f"got shape {y.shape} for x of shape {x.shape}")
    return x.astype(np.float32), y


def load_arrays(cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
    loaders = {"digits": lambda: _digits(), "synthetic-regression": lambda: _synthetic_regression(cfg),
               "csv": lambda: _csv(cfg), "npz": lambda: _npz(cfg)}
    x, y = loaders[cfg.name]()
    if len(x) < 20:
        raise DatasetError(f"dataset: only {len(x)} rows; at least 20 are needed to split train/val/eval")
    if not np.isfinite(x).all():
        raise DatasetError("dataset: features contain NaN or infinite values; clean or impute them first")
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise DatasetError("dataset: the target contains NaN or infinite values; drop those rows first")
    return x, y


def task_of(cfg: DatasetConfig) -> str:
    if cfg.task:
        return cfg.task
    return "regression" if cfg.name == "synthetic-regression" else "classification"


def make_split(cfg: DatasetConfig, split_seed: int) -> Split:
    x, y = load_arrays(cfg)
    task = task_of(cfg)
    n_classes = 0
    if task == "classification":
        if not np.allclose(y, np.round(y)):
            raise DatasetError("dataset.task: classification needs integer class labels; "
                               "set task: regression for a continuous target")
        classes, y = np.unique(y.astype(np.int64), return_inverse=True)
        n_classes = int(len(classes))
        if n_classes < 2:
            raise DatasetError("dataset: the target has a single class; classification needs at least 2")
    else:
        y = y.astype(np.float32)
    n = len(x)
    order = np.random.default_rng(cfg.eval_seed).permutation(n)
    n_eval = max(1, int(round(n * cfg.eval_fraction)))
    eval_idx, rest = np.sort(order[:n_eval]), order[n_eval:]
    rest = np.random.default_rng([cfg.eval_seed, split_seed]).permutation(np.sort(rest))
    n_val = max(1, int(round(n * cfg.val_fraction)))
    val_idx, train_idx = rest[:n_val], np.sort(rest[n_val:])
    if cfg.standardize:
        # Statistics of every non-evaluation row: independent of the split seed, so the
        # evaluation inputs are bit-identical in every run, and no evaluation row leaks in.
        pool = x[np.sort(rest)].astype(np.float64)  # sorted: summation order must not depend on the seed
        mean = pool.mean(axis=0)
        std = pool.std(axis=0)
        std[std == 0] = 1.0
        x = ((x - mean) / std).astype(np.float32)
    return Split(Arrays(x[train_idx], y[train_idx]), Arrays(x[val_idx], y[val_idx]),
                 Arrays(x[eval_idx], y[eval_idx]), task, n_classes)


def data_fingerprint(cfg: DatasetConfig) -> str:
    """Digest of the raw arrays, so a changed data file changes every run key."""
    x, y = load_arrays(cfg)
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()[:16]
