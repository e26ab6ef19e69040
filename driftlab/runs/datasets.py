"""Datasets: a fixed evaluation set, and a train/validation split chosen by a seed.

The evaluation set is carved out once (``eval_seed``) and is the same for every
run of an experiment, so predictions of different runs can be compared row by
row. ``split_seed`` only reshuffles which of the remaining rows train and which
validate: it is one of the sources of variation driftlab measures.

Without ``dataset.task``, a csv/npz dataset's task is inferred from its target
(``infer_task``): text labels are classes; numbers that are not all whole
numbers are a regression target; whole numbers are class labels when there are
at most ``MAX_INFERRED_CLASSES`` distinct values and each of them occurs in at
least 2 rows, and a regression target otherwise.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from driftlab.errors import BadInput

if TYPE_CHECKING:  # annotations only: config.schema asks this module for inferred tasks, lazily
    from driftlab.config import DatasetConfig


class DatasetError(BadInput):
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
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one row of x: ``(features,)``, or e.g. ``(8, 8, 1)`` for images."""
        return tuple(int(d) for d in self.train.x.shape[1:])

    @property
    def n_features(self) -> int:
        """The number of values in one row of x (the flattened size for images)."""
        return int(np.prod(self.input_shape, dtype=np.int64))


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
            values = [float(v) for i, v in enumerate(row) if i != t]
        except ValueError:
            col = next(i for i, v in enumerate(row) if i != t and not _is_float(v))
            raise DatasetError(f"dataset.path: '{path}' line {lineno} has a non-numeric value {row[col]!r} in "
                               f"feature column '{header[col]}'; encode categories as numbers first (only the "
                               "target column may hold text labels)") from None
        label = row[t].strip()
        if not label:
            raise DatasetError(f"dataset.target: '{path}' line {lineno} has no value in column '{cfg.target}'; "
                               "drop rows without a target first")
        labels.append(label)
        feats.append(values)
    try:
        y = np.asarray([float(v) for v in labels])
    except ValueError:
        y = np.asarray(labels)  # text labels: classes (mapped to 0..K-1 in sorted order by make_split)
    return np.asarray(feats, dtype=np.float32), y


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _npz(cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
    path = Path(cfg.path or "")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"dataset.path: cannot read '{path}' as .npz: {exc}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise DatasetError(f"dataset.path: '{path}' holds a single array, not an .npz archive; "
                           "save it with np.savez(path, x=x, y=y)")
    with data:
        if "x" not in data or "y" not in data:
            raise DatasetError(f"dataset.path: '{path}' must hold arrays named 'x' and 'y'; "
                               f"found: {', '.join(data.files) or 'nothing'}")
        x, y = _npz_array(data, "x", path), _npz_array(data, "y", path)
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"dataset.path: array 'x' in '{path}' is not numeric (dtype {x.dtype}); features must "
                           "be numbers: encode categories as numbers and save x as float32, "
                           "e.g. np.savez(path, x=x.astype('float32'), y=y)")
    if y.dtype.kind not in "biufUS":
        raise DatasetError(f"dataset.path: array 'y' in '{path}' has dtype {y.dtype}; give numbers, or text "
                           "labels for classes (e.g. y.astype(str))")
    if x.ndim < 2 or 0 in x.shape[1:]:
        raise DatasetError(f"dataset.path: 'x' in '{path}' must have one row per example, shape (rows, features) "
                           f"or (rows, d1, d2, ...) for images; got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DatasetError(f"dataset.path: 'y' in '{path}' must be 1-D with one value per row of x; "
                           f"got shape {y.shape} for x of shape {x.shape}")
    return x.astype(np.float32), y


def _npz_array(data, name: str, path: Path) -> np.ndarray:
    try:
        return data[name]
    except ValueError as exc:  # object arrays: np.load refuses to unpickle them (allow_pickle=False)
        if "pickle" not in str(exc) and "Object arrays" not in str(exc):
            raise DatasetError(f"dataset.path: cannot read array '{name}' in '{path}': {exc}") from None
        fix = ("save x as a numeric array, e.g. np.savez(path, x=x.astype('float32'), y=y)" if name == "x" else
               "save y as numbers, or as text labels with y.astype(str)")
        raise DatasetError(f"dataset.path: array '{name}' in '{path}' holds Python objects (dtype object), "
                           f"which driftlab does not unpickle; {fix}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"dataset.path: cannot read array '{name}' in '{path}': {exc}") from None


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


# -- the task: fixed for built-in datasets, set in dataset.task, or inferred from the target --

MAX_INFERRED_CLASSES = 20  # whole-number targets with more distinct values read as continuous


@dataclass(frozen=True)
class TaskInference:
    """The task of a dataset and why: ``inferred`` is true when the target decided it."""

    task: str
    reason: str  # e.g. "target 'y' has 214 distinct numeric values, more than 20 for class labels"
    inferred: bool

    def sentence(self) -> str:
        if self.inferred:
            return f"inferred {self.task}: {self.reason} (set dataset.task to override)"
        return f"{self.task}: {self.reason}"


@dataclass(frozen=True)
class _Target:
    """What the task rules look at in a target column."""

    kind: str  # "text", "bool", "fraction" (some value not a whole number) or "whole"
    n_distinct: int
    n_single: int  # distinct values that occur in exactly one row
    example: object  # a text label, or a value that is not a whole number


def _target_facts(y: np.ndarray) -> _Target:
    values, counts = np.unique(y, return_counts=True)
    n_single = int(np.sum(counts == 1))
    if y.dtype.kind in "US":
        return _Target("text", len(values), n_single, values[0].item())
    if y.dtype.kind == "b":
        return _Target("bool", len(values), n_single, None)
    fractional = values[values != np.round(values)]
    if fractional.size:
        return _Target("fraction", len(values), n_single, float(fractional[0]))
    return _Target("whole", len(values), n_single, None)


def _target_name(cfg: DatasetConfig) -> str:
    return f"target '{cfg.target}'" if cfg.name == "csv" else "target array 'y'"


def _decide(cfg: DatasetConfig, facts: _Target) -> TaskInference:
    name = _target_name(cfg)
    if facts.kind == "text":
        return TaskInference("classification", f"{name} holds text labels ({facts.n_distinct} distinct, "
                                               f"e.g. {facts.example!r})", True)
    if facts.kind == "bool":
        return TaskInference("classification", f"{name} is boolean", True)
    if facts.kind == "fraction":
        return TaskInference("regression", f"{name} has {facts.n_distinct} distinct numeric values, not all "
                                           f"whole numbers (e.g. {facts.example:g})", True)
    if facts.n_distinct > MAX_INFERRED_CLASSES:
        return TaskInference("regression", f"{name} has {facts.n_distinct} distinct numeric values, more than "
                                           f"{MAX_INFERRED_CLASSES} for class labels", True)
    if facts.n_single:
        return TaskInference("regression", f"{name} has {facts.n_distinct} distinct whole-number values, "
                                           f"{facts.n_single} of them in a single row (class labels need 2+ rows "
                                           "each)", True)
    return TaskInference("classification", f"{name} has {facts.n_distinct} distinct whole-number values, "
                                           f"each in 2+ rows: class labels", True)


_INFERENCES: dict[tuple, TaskInference] = {}
_INFERENCES_LOCK = threading.Lock()
_MAX_INFERENCES = 64


def _file_key(cfg: DatasetConfig) -> tuple | None:
    """(name, path, mtime, size, target): a changed file is a new key. None when it cannot be stat'ed."""
    try:
        st = os.stat(cfg.path or "")
    except (OSError, ValueError):
        return None
    return cfg.name, os.path.abspath(cfg.path or ""), st.st_mtime_ns, st.st_size, cfg.target


def _infer(cfg: DatasetConfig, y: np.ndarray | None = None, key: tuple | None = None) -> TaskInference:
    if cfg.task:
        return TaskInference(cfg.task, "set in dataset.task", False)
    if cfg.name == "digits":
        return TaskInference("classification", "built-in dataset 'digits'", False)
    if cfg.name == "synthetic-regression":
        return TaskInference("regression", "built-in dataset 'synthetic-regression'", False)
    if key is None and y is None:
        key = _file_key(cfg)  # before reading: a file changed meanwhile is only ever a cache miss
    if key is not None:
        with _INFERENCES_LOCK:
            cached = _INFERENCES.get(key)
        if cached is not None:
            return cached
    if y is None:
        y = load_arrays(cfg)[1]
    inference = _decide(cfg, _target_facts(y))
    if key is not None:
        with _INFERENCES_LOCK:
            _INFERENCES[key] = inference
            while len(_INFERENCES) > _MAX_INFERENCES:
                _INFERENCES.pop(next(iter(_INFERENCES)))
    return inference


def infer_task(cfg: DatasetConfig) -> TaskInference:
    """The dataset's task and the reason, reading a csv/npz target when dataset.task is not set.

    Rule for csv/npz without ``dataset.task`` (on every row of the file):
    text labels (or booleans) are classification; numbers that are not all
    whole numbers are regression; whole numbers with at most
    ``MAX_INFERRED_CLASSES`` distinct values, each in at least 2 rows, are
    classification; other whole numbers are regression. Cached per
    (path, mtime, size, target). Raises ``DatasetError`` for an unreadable file.
    """
    return _infer(cfg)


def task_of(cfg: DatasetConfig) -> str:
    return infer_task(cfg).task


def _check_task(cfg: DatasetConfig, y: np.ndarray, task: str) -> None:
    """Refuse a task set in dataset.task that the target cannot have."""
    facts = _target_facts(y)
    name = _target_name(cfg) if cfg.name in ("csv", "npz") else "the target"
    if task == "regression" and facts.kind == "text":
        raise DatasetError(f"dataset.task is regression, but {name} holds text labels (e.g. {facts.example!r}); "
                           "set dataset.task: classification, or make the target numeric")
    if task != "classification":
        return
    if facts.kind == "fraction":
        raise DatasetError(f"dataset.task is classification, but {name} has {facts.n_distinct} distinct values, "
                           f"not all whole numbers (e.g. {facts.example:g}): it looks continuous; "
                           "set dataset.task: regression, or bin the target into classes")
    if facts.kind == "whole" and facts.n_distinct > MAX_INFERRED_CLASSES and facts.n_single:
        raise DatasetError(f"dataset.task is classification, but {name} has {facts.n_distinct} distinct values "
                           f"(more than {MAX_INFERRED_CLASSES}), {facts.n_single} of them in a single row: it "
                           "looks continuous; set dataset.task: regression, or bin the target into classes")


def make_split(cfg: DatasetConfig, split_seed: int) -> Split:
    key = _file_key(cfg) if cfg.name in ("csv", "npz") else None
    x, y = load_arrays(cfg)
    task = _infer(cfg, y, key).task
    _check_task(cfg, y, task)
    n_classes = 0
    if task == "classification":
        labels = y if y.dtype.kind in "US" else y.astype(np.int64)  # text labels: classes in sorted order
        classes, y = np.unique(labels, return_inverse=True)
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


def flattened(split: Split) -> Split:
    """The split with each row of x as ``n_features`` values: for builders that know no ``input_shape``."""
    def flat(a: Arrays) -> Arrays:
        return Arrays(a.x.reshape(len(a.x), -1), a.y)

    return Split(flat(split.train), flat(split.val), flat(split.eval), split.task, split.n_classes)


def data_fingerprint(cfg: DatasetConfig) -> str:
    """Digest of the raw arrays, so a changed data file changes every run key."""
    key = _file_key(cfg) if cfg.name in ("csv", "npz") else None
    x, y = load_arrays(cfg)
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    if x.ndim > 2:  # (n, 8, 8, 1) and (n, 64) hold the same bytes; 2-D digests stay as they were
        h.update(repr(x.shape).encode())
    if y.dtype.kind in "US":
        h.update(str(y.dtype).encode())
    if cfg.name in ("csv", "npz") and not cfg.task and _infer(cfg, y, key).task == "regression":
        # Before inference such a file was trained as classification: new keys, so a campaign
        # never resumes from those records. Files still read as classification keep their keys.
        h.update(b"task:regression")
    return h.hexdigest()[:16]
