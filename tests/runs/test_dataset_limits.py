"""Data files that are too large or malformed are refused with the file, the column or array and the fix.

Issue 14, defects 3 and 4, at the library level (tests/reliability/test_input_limits.py runs
the same files through the CLI).
"""

from __future__ import annotations

import csv
import io
import os
import zipfile

import numpy as np
import pytest

from driftlab import settings
from driftlab.config import DatasetConfig
from driftlab.runs import datasets
from driftlab.runs.datasets import DatasetError, make_split


def _csv(tmp_path, content: bytes, target: str = "label") -> DatasetConfig:
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    return DatasetConfig(name="csv", path=str(path), target=target)


def _npz(tmp_path, **arrays) -> DatasetConfig:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return DatasetConfig(name="npz", path=str(path))


def _npy(shape: tuple, dtype: str, payload: bytes = b"") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": shape})
    return out.getvalue() + payload


ROWS = b"1,0\n2,1\n" * 15


# -- csv -----------------------------------------------------------------------------------------------------
def test_latin1_csv_names_line_column_and_fix(tmp_path):
    cfg = _csv(tmp_path, b"city,label\n" + "Zürich,1\n".encode("latin-1") * 30)
    with pytest.raises(DatasetError, match=r"'.*d.csv' is not UTF-8 text \(line 2, column 'city': byte 0xfc\)"
                                           r".*save it as UTF-8"):
        make_split(cfg, 0)


def test_a_bad_byte_deep_in_a_large_file_is_found_on_its_line(tmp_path):
    cfg = _csv(tmp_path, b"a,label\n" + ROWS * 2000 + b"1,\xff\n" + ROWS)
    with pytest.raises(DatasetError, match=r"line 60002, column 'label': byte 0xff"):
        make_split(cfg, 0)


def test_a_utf8_bom_is_dropped(tmp_path):
    cfg = _csv(tmp_path, b"\xef\xbb\xbflabel,a\n" + b"0,1\n1,2\n" * 15)
    split = make_split(cfg, 0)
    assert split.n_classes == 2 and split.n_features == 1


def test_a_field_over_the_csv_limit_is_refused_one_at_the_limit_is_read(tmp_path):
    limit = csv.field_size_limit()
    over = _csv(tmp_path, b"a,label\n1,0\n\"" + b"9" * (limit + 1) + b"\",1\n" + ROWS)
    with pytest.raises(DatasetError, match=r"line 3, column 'a' has a field longer than 128 KiB.*quote is probably left open"):
        make_split(over, 0)
    at = _csv(tmp_path, b"a,label\n\"0." + b"0" * (limit - 3) + b"1\",1\n" + ROWS)
    assert make_split(at, 0).n_features == 1


def test_a_nul_byte_in_the_target_is_refused(tmp_path):
    cfg = _csv(tmp_path, b"a,label\n" + ROWS + b"3,1\x00\n" + ROWS)
    with pytest.raises(DatasetError, match=r"line 32 has a NUL byte in column 'label'.*save it as UTF-8"):
        make_split(cfg, 0)
    feature = _csv(tmp_path, b"a,label\n" + ROWS + b"3\x00,1\n" + ROWS)
    with pytest.raises(DatasetError, match=r"line 32 has a non-numeric value '3\\x00' in feature column 'a'"):
        make_split(feature, 0)


def test_utf16_csv_is_refused_as_not_utf8(tmp_path):
    with pytest.raises(DatasetError, match=r"not UTF-8 text \(line 1: byte 0xff\)"):
        make_split(_csv(tmp_path, ("a,label\n" + "1,0\n2,1\n" * 15).encode("utf-16")), 0)


def test_features_read_as_before_bit_for_bit(tmp_path):
    """The csv reader keeps float32 values in an array now; the values (and so every run key) are unchanged."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(300, 3)) * 10.0 ** rng.integers(-40, 40, size=(300, 3))).tolist()
    text = "a,label,b,c\n" + "".join(f"{r[0]!r},{i % 3},{r[1]!r},{r[2]!r}\n" for i, r in enumerate(x))
    cfg = _csv(tmp_path, text.encode())
    got, _ = datasets._csv(cfg)
    rows = list(csv.reader(io.StringIO(text)))[1:]
    with np.errstate(over="ignore"):
        before = np.asarray([[float(v) for i, v in enumerate(r) if i != 1] for r in rows], dtype=np.float32)
    assert got.shape == (300, 3) and np.array_equal(got.view(np.uint32), before.view(np.uint32))


def test_a_csv_over_the_data_limit_is_refused_one_at_it_is_read(tmp_path, monkeypatch):
    content = b"a,label\n" + ROWS * 10
    monkeypatch.setenv(settings.MAX_DATA_BYTES.name, str(len(content)))
    assert make_split(_csv(tmp_path, content), 0).n_classes == 2
    with pytest.raises(DatasetError, match=rf"it is {len(content) + 1:,} bytes, more than the {len(content):,} bytes "
                                           rf"limit \({settings.MAX_DATA_BYTES.name}="):
        make_split(_csv(tmp_path, content + b"\n"), 0)


@pytest.mark.parametrize("path, kind", [("/dev/zero", "a character device"), ("/tmp", "a directory")])
def test_not_regular_data_files_are_refused(path, kind):
    for name in ("csv", "npz"):
        cfg = DatasetConfig(name=name, path=path, target="label" if name == "csv" else None)
        with pytest.raises(DatasetError, match=f"dataset.path: cannot read '{path}': is {kind}"):
            make_split(cfg, 0)


# -- npz -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arrays, needle", [
    ({"x": np.array([["a", "b"]] * 30), "y": np.arange(30) % 2},
     r"array 'x' .* is not numeric \(dtype <U1\).*np.asarray\(x, dtype='float32'\)"),
    ({"x": np.zeros((30, 2)), "y": np.array([{"a": 1}] * 30, dtype=object)},
     r"array 'y' .* holds Python objects \(dtype object\).*y.astype\(str\)"),
    ({"x": np.zeros((30, 2)), "y": np.zeros(30, complex)}, r"array 'y' .* has dtype complex128"),
    ({"x": np.zeros((30, 2), dtype="datetime64[D]"), "y": np.arange(30) % 2}, r"array 'x' .* is not numeric"),
    ({}, "must hold arrays named 'x' and 'y'; found: nothing"),
])
def test_npz_arrays_driftlab_cannot_use_are_refused_before_loading(tmp_path, arrays, needle):
    with pytest.raises(DatasetError, match=needle):
        make_split(_npz(tmp_path, **arrays), 0)


def test_npz_text_labels_in_y_are_classes_not_a_regression_target(tmp_path):
    arrays = {"x": np.random.default_rng(0).normal(size=(40, 3)), "y": np.array(["cat", "dog"] * 20)}
    assert make_split(_npz(tmp_path, **arrays), 0).n_classes == 2
    cfg = _npz(tmp_path, **arrays).model_copy(update={"task": "regression"})
    with pytest.raises(DatasetError, match="dataset.task is regression, but target array 'y' holds text labels"):
        make_split(cfg, 0)


def _zip(tmp_path, members: dict[str, bytes]) -> DatasetConfig:
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return DatasetConfig(name="npz", path=str(path))


def test_npz_members_that_are_not_arrays_or_lie_about_their_size_are_refused(tmp_path):
    y = _npy((30,), "i8", bytes(240))
    with pytest.raises(DatasetError, match="array 'x' in '.*' is not a NumPy array"):
        make_split(_zip(tmp_path, {"x": b"hello", "y.npy": y}), 0)
    with pytest.raises(DatasetError, match=r"array 'x' in '.*' declares shape \(1000000000, 10\) "
                                           r"\(80,000,000,000 bytes\) but holds 228.*damaged"):
        make_split(_zip(tmp_path, {"x.npy": _npy((10**9, 10), "f8", bytes(100)), "y.npy": y}), 0)
    ok = _zip(tmp_path, {"x.npy": _npy((30, 2), "f4", np.arange(60, dtype="f4").tobytes()), "y.npy": _npy(
        (30,), "i8", (np.arange(30) % 2).tobytes())})
    assert make_split(ok, 0).n_features == 2  # control: a hand-written archive of real arrays


def test_npz_that_is_not_a_zip_or_is_damaged_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    for content, needle in ((b"", "it is not a zip archive"), (b"hello" * 20, "it is not a zip archive")):
        path.write_bytes(content)
        with pytest.raises(DatasetError, match=needle):
            make_split(DatasetConfig(name="npz", path=str(path)), 0)
    np.savez_compressed(path, x=np.random.default_rng(0).normal(size=(200, 3)), y=np.arange(200) % 2)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[:len(data) // 2]))  # cut: no central directory
    with pytest.raises(DatasetError, match="cannot read '.*' as .npz"):
        make_split(DatasetConfig(name="npz", path=str(path)), 0)


def test_a_zip_bomb_is_refused_by_its_declared_size_before_inflating(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.MAX_DATA_BYTES.name, "1MiB")
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, x=np.zeros((262_144, 10), np.float32), y=np.ones(262_144, np.int8))
    assert os.path.getsize(bomb) < 50_000
    with pytest.raises(DatasetError, match=r"take 10,748,\d+ bytes once uncompressed, more than the 1 MiB limit"):
        make_split(DatasetConfig(name="npz", path=str(bomb)), 0)
    np.savez_compressed(bomb, x=np.ones((20_000, 10), np.float32), y=np.arange(20_000) % 2)  # 0.96 MB inflated
    assert make_split(DatasetConfig(name="npz", path=str(bomb)), 0).n_features == 10
