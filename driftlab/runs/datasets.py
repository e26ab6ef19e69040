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

import csv
import hashlib
import io
import itertools
import math
import os
import threading
import zipfile
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from driftlab import inputs, settings
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
    x, y = _digits_raw()
    return (x / 16.0).astype(np.float32), y.astype(np.int64)


def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits, read from the file its ``load_digits`` parses, without importing scikit-learn.

    ``import sklearn`` costs 1.5-2 s of one core, and the command and every stage task of a run
    load this dataset (training workers import scikit-learn anyway: Keras does): parsing the file
    the same way (``np.loadtxt``, last column the target) gives the same arrays (``tests/runs/test_datasets.py`` compares them with ``load_digits``).
    If the file is not where scikit-learn keeps it, ``load_digits`` reads it.
    """
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0], "datasets", "data", "digits.csv.gz") if folders else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        return load_digits(return_X_y=True)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = np.loadtxt(fh, delimiter=",")
    return data[:, :-1], data[:, -1].astype(int)


def _synthetic_regression(cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
    # The shape of the classic "inconsistent Keras results" example: a linear
    # target over cfg.n_features features plus Gaussian noise, fully seeded.
    rng = np.random.default_rng(cfg.eval_seed + 7919)
    x = rng.normal(size=(cfg.n_samples, cfg.n_features)).astype(np.float32)
    coef = rng.normal(size=cfg.n_features).astype(np.float32)
    y = x @ coef + 0.5 * np.sin(x[:, 0] * 2.0) + rng.normal(scale=cfg.noise, size=cfg.n_samples)
    return x, y.astype(np.float32)


def _csv(cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
    path = Path(cfg.path or "")
    try:
        with io.TextIOWrapper(inputs.open_bounded(path, settings.MAX_DATA_BYTES, "dataset.path"),
                              encoding="utf-8-sig", newline="") as fh:  # a UTF-8 BOM is dropped
            reader = csv.reader(fh)
            try:
                return _csv_rows(cfg, path, reader)
            except UnicodeDecodeError:
                raise DatasetError(_not_utf8(path)) from None
            except csv.Error as exc:
                raise DatasetError(_not_csv(path, reader.line_num, exc)) from None
    except inputs.FileRefused as exc:
        raise DatasetError(f"dataset.path: cannot read '{path}': {exc.reason}") from None
    except OSError as exc:
        raise DatasetError(f"dataset.path: cannot read '{path}': {exc.strerror or exc}") from None


def _csv_rows(cfg: DatasetConfig, path: Path, reader) -> tuple[np.ndarray, np.ndarray]:
    header, first = next(reader, None), next(reader, None)
    if header is None or first is None:
        raise DatasetError(f"dataset.path: '{path}' has no data rows (a header and at least one row are needed)")
    header = [h.strip() for h in header]
    if cfg.target not in header:
        raise DatasetError(f"dataset.target: column '{cfg.target}' is not in '{path}'; "
                           f"columns are: {', '.join(header)}")
    t = header.index(cfg.target)
    feats, labels, distinct = array("f"), [], {}  # 4 bytes a value; one string per distinct label
    for lineno, row in enumerate(itertools.chain([first], reader), start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DatasetError(f"dataset.path: '{path}' line {lineno} has {len(row)} fields, header has {len(header)}")
        try:
            values = [float(v) for i, v in enumerate(row) if i != t]
        except ValueError:
            col = next(i for i, v in enumerate(row) if i != t and not _is_float(v))
            raise DatasetError(f"dataset.path: '{path}' line {lineno} has a non-numeric value {row[col][:40]!r} in "
                               f"feature column '{header[col]}'; encode categories as numbers first (only the "
                               "target column may hold text labels)") from None
        label = row[t].strip()
        if not label:
            raise DatasetError(f"dataset.target: '{path}' line {lineno} has no value in column '{cfg.target}'; "
                               "drop rows without a target first")
        if "\0" in label:
            raise DatasetError(f"dataset.target: '{path}' line {lineno} has a NUL byte in column '{cfg.target}': "
                               "the file is binary or UTF-16, not CSV text; save it as UTF-8 CSV")
        labels.append(distinct.setdefault(label, label))
        feats.extend(values)
    try:
        y = np.asarray([float(v) for v in labels])
    except ValueError:
        y = np.asarray(labels)  # text labels: classes (mapped to 0..K-1 in sorted order by make_split)
    return np.frombuffer(feats, dtype=np.float32).reshape(len(labels), len(header) - 1), y


def _not_utf8(path: Path) -> str:
    """Where the first byte that is not UTF-8 is: line, column, byte (read again: only on this error)."""
    where = ""
    with inputs.open_bounded(path, settings.MAX_DATA_BYTES, "dataset.path") as fh:
        header: list[str] = []
        for lineno, line in enumerate(fh, start=1):
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                field = max(1, len(next(csv.reader([line[:exc.start].decode("utf-8", "replace")]), []))) - 1
                column = f", column '{header[field]}'" if field < len(header) else ""
                where = f" (line {lineno}{column}: byte 0x{line[exc.start]:02x})"
                break
            if lineno == 1:
                header = [h.strip() for h in next(csv.reader([text]), [])]
    return (f"dataset.path: '{path}' is not UTF-8 text{where}, perhaps Latin-1 or Windows-1252; save it as UTF-8 "
            "(e.g. iconv -f latin1 -t utf-8, or pandas: df.to_csv(path, encoding='utf-8'))")


def _long_field_column(path: Path) -> str:
    """``, column 'NAME'`` of the first field over the csv module's limit (read again: only on this error)."""
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, inputs.byte_limit(settings.MAX_DATA_BYTES)))
    try:
        with io.TextIOWrapper(inputs.open_bounded(path, settings.MAX_DATA_BYTES, "dataset.path"),
                              encoding="utf-8-sig", newline="") as fh:
            header: list[str] = []
            for row in csv.reader(fh):
                for i, value in enumerate(row):
                    if len(value) > limit:
                        return f", column '{header[i]}'" if i < len(header) else f", column {i + 1}"
                header = header or [h.strip() for h in row]
    except (OSError, ValueError, csv.Error, inputs.FileRefused):
        pass  # the first error already says what is wrong; the column is a courtesy
    finally:
        csv.field_size_limit(limit)
    return ""


def _not_csv(path: Path, lineno: int, exc: Exception) -> str:
    if "field limit" in str(exc):
        return (f"dataset.path: '{path}' line {lineno}{_long_field_column(path)} has a field longer than 128 KiB "
                "(the csv module's field limit); a number is never that long: a quote is probably left open (a "
                "field that starts with '\"' must end with '\"'), or the file is not comma-separated; fix the file")
    return f"dataset.path: '{path}' line {lineno} is not valid CSV ({exc}); fix the file"


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


NPY_MAGIC, ZIP_MAGICS = b"\x93NUMPY", (b"PK\x03\x04", b"PK\x05\x06")
#: What a damaged, encrypted or oddly compressed zip member raises while it is read.
ZIP_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


def _npz(cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
    path = Path(cfg.path or "")
    try:
        with inputs.open_bounded(path, settings.MAX_DATA_BYTES, "dataset.path") as fh:
            magic = fh.read(len(NPY_MAGIC))
            fh.seek(0)
            if magic == NPY_MAGIC:
                raise DatasetError(f"dataset.path: '{path}' holds a single array, not an .npz archive; "
                                   "save it with np.savez(path, x=x, y=y)")
            if magic[:4] not in ZIP_MAGICS:
                raise DatasetError(f"dataset.path: cannot read '{path}' as .npz: it is not a zip archive; "
                                   "save it with np.savez(path, x=x, y=y)")
            try:
                data = np.load(fh, allow_pickle=False)
            except (ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise DatasetError(f"dataset.path: cannot read '{path}' as .npz: {exc}") from None
            with data:
                if "x" not in data or "y" not in data:
                    raise DatasetError(f"dataset.path: '{path}' must hold arrays named 'x' and 'y'; "
                                       f"found: {', '.join(data.files) or 'nothing'}")
                _check_npz_members(data, path)
                x, y = _npz_array(data, "x", path), _npz_array(data, "y", path)
    except inputs.FileRefused as exc:
        raise DatasetError(f"dataset.path: cannot read '{path}': {exc.reason}") from None
    except OSError as exc:
        raise DatasetError(f"dataset.path: cannot read '{path}': {exc.strerror or exc}") from None
    if x.ndim < 2 or 0 in x.shape[1:]:
        raise DatasetError(f"dataset.path: 'x' in '{path}' must have one row per example, shape (rows, features) "
                           f"or (rows, d1, d2, ...) for images; got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DatasetError(f"dataset.path: 'y' in '{path}' must be 1-D with one value per row of x; "
                           f"got shape {y.shape} for x of shape {x.shape}")
    return x.astype(np.float32), y


def _check_npz_members(data, path: Path) -> None:
    """Before anything is decompressed: x and y are .npy arrays of usable dtypes whose sizes fit the limit."""
    limit = inputs.byte_limit(settings.MAX_DATA_BYTES)
    names = data.zip.namelist()
    members = {name: data.zip.getinfo(name if name in names else f"{name}.npy") for name in ("x", "y")}
    unpacked = sum(info.file_size for info in members.values())
    if unpacked > limit:  # declared sizes: zipfile never inflates a member past its own
        raise DatasetError(f"dataset.path: the arrays 'x' and 'y' in '{path}' take {unpacked:,} bytes once "
                           f"uncompressed, more than the {inputs.human(limit)} limit "
                           f"({settings.MAX_DATA_BYTES.name}={settings.MAX_DATA_BYTES.get()}); use less data, "
                           f"or raise {settings.MAX_DATA_BYTES.name}")
    for name, info in members.items():
        try:
            with data.zip.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(member)
        except ZIP_ERRORS as exc:
            raise DatasetError(f"dataset.path: array '{name}' in '{path}' is not a NumPy array ({exc}); save "
                               "the arrays with np.savez(path, x=x, y=y)") from None
        _check_npz_dtype(name, dtype, path)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > info.file_size:
            raise DatasetError(f"dataset.path: array '{name}' in '{path}' declares shape {shape} ({nbytes:,} bytes) "
                               f"but holds {info.file_size:,}: the archive is damaged; save it again with "
                               "np.savez(path, x=x, y=y)")


def _check_npz_dtype(name: str, dtype: np.dtype, path: Path) -> None:
    if dtype.hasobject:  # np.load would have to unpickle it (allow_pickle=False refuses)
        fix = ("save x as a numeric array, e.g. np.savez(path, x=x.astype('float32'), y=y)" if name == "x" else
               "save y as numbers, or as text labels with y.astype(str)")
        raise DatasetError(f"dataset.path: array '{name}' in '{path}' holds Python objects (dtype object), "
                           f"which driftlab does not unpickle; {fix}")
    if name == "x" and dtype.kind not in "biuf":
        raise DatasetError(f"dataset.path: array 'x' in '{path}' is not numeric (dtype {dtype}); features must "
                           "be numbers: encode categories as numbers and convert with "
                           "np.asarray(x, dtype='float32'), e.g. np.savez(path, x=x.astype('float32'), y=y)")
    if name == "y" and dtype.kind not in "biufUS":
        raise DatasetError(f"dataset.path: array 'y' in '{path}' has dtype {dtype}; give numbers, or text "
                           "labels for classes (e.g. y.astype(str))")


def _npz_array(data, name: str, path: Path) -> np.ndarray:
    try:
        return data[name]
    except ZIP_ERRORS as exc:
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
