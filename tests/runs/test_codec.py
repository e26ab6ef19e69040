"""Records' arrays decode exactly, and without ``ast`` so that a tuning task's threads can decode at once.

CPython 3.11's ``ast`` is not thread-safe ("SystemError: AST constructor recursion depth mismatch"),
and ``np.load`` parses every ``.npy`` header with ``ast.literal_eval``; a tuning task decodes its
workers' records in several threads.
"""

from __future__ import annotations

import ast
import io
import threading
import zlib

import numpy as np
import pytest

from driftlab.runs import codec

ARRAYS = {
    "float32": np.random.default_rng(0).random((5, 3)).astype(np.float32),
    "int64": np.arange(7),
    "fortran": np.asfortranarray(np.arange(24.0).reshape(4, 6)),
    "empty": np.zeros((0, 3)),
    "scalar": np.array(2.5),
    "big-endian": np.arange(3, dtype=">f8"),
    "text": np.array(["a", "bc"]),
    "bool": np.array([True, False]),
    "datetime": np.array(["2026-12-07"], dtype="M8[ns]"),
    "3-d": np.arange(60, dtype=np.int16).reshape(3, 4, 5),
}


def reference(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(zlib.decompress(blob)), allow_pickle=False)


@pytest.fixture
def ast_refused(monkeypatch):
    """``ast`` parsing raises, as if another thread were inside it."""
    def refuse(*args, **kwargs):
        raise SystemError("AST constructor recursion depth mismatch (simulated)")
    monkeypatch.setattr(ast, "literal_eval", refuse)


@pytest.mark.parametrize("name", list(ARRAYS))
def test_unpack_gives_what_np_load_gives(name):
    blob = codec.pack(ARRAYS[name])
    got, want = codec.unpack(blob), reference(blob)
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
    assert got.flags.writeable, "a record's arrays can be edited like np.load's"
    assert codec.unpack_text(codec.pack_text(ARRAYS[name])).tobytes() == want.tobytes()


@pytest.mark.parametrize("name", list(ARRAYS))
def test_unpack_needs_no_ast(name, ast_refused):
    got = codec.unpack(codec.pack(ARRAYS[name]))
    assert np.array_equal(got, ARRAYS[name])


def test_control_np_load_does_parse_with_ast(ast_refused):
    with pytest.raises(SystemError, match="simulated"):
        reference(codec.pack(np.arange(3)))


def test_what_the_pattern_does_not_read_still_decodes_through_np_load():
    structured = np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")])
    blob = codec.pack(structured)
    assert codec.from_npy(zlib.decompress(blob)) is None, "structured dtypes are np.load's"
    assert codec.unpack(blob).dtype == structured.dtype


def test_truncated_bytes_are_not_read_past_their_end():
    raw = zlib.decompress(codec.pack(np.arange(100)))
    assert codec.from_npy(raw[:-8]) is None
    assert codec.from_npy(b"not npy") is None


def test_threads_decode_at_once():
    blobs = [codec.pack(a) for a in ARRAYS.values()]
    errors: list[BaseException] = []

    def decode():
        try:
            for _ in range(300):
                for blob, want in zip(blobs, ARRAYS.values()):
                    assert np.array_equal(codec.unpack(blob), want)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=decode) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize("name", list(ARRAYS))
def test_any_npy_bytes_read_as_np_load_reads_them(name):
    buf = io.BytesIO()
    np.save(buf, ARRAYS[name])  # Fortran order kept, unlike pack
    got = codec.from_npy(buf.getvalue())
    want = np.load(io.BytesIO(buf.getvalue()))
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)


@pytest.mark.parametrize("name", list(ARRAYS))
def test_plain_and_compressed_blobs_read_the_same(name):
    plain, packed = codec.pack(ARRAYS[name], compress=False), codec.pack(ARRAYS[name])
    assert plain[:6] == codec.NPY_MAGIC and packed[:6] != codec.NPY_MAGIC
    for blob in (plain, packed, memoryview(plain), memoryview(packed)):  # psycopg2 gives bytea as memoryview
        got = codec.unpack(blob)
        assert got.dtype == ARRAYS[name].dtype and got.shape == ARRAYS[name].shape
        assert np.array_equal(got, ARRAYS[name]) and got.flags.writeable


def test_plain_blobs_are_what_the_store_writes_and_reads_back(tmp_path):
    from driftlab.storage import arrays
    from driftlab.storage.store import Store

    class Spec:
        key, stage, campaign, profile_name, plan = "k1", "retrain", "c", "ref", "p"
        init_seed = shuffle_seed = split_seed = repeat = 0
        deterministic = True

        def to_json(self):
            return {"key": self.key}

    store = Store(f"sqlite:///{tmp_path / 'r.sqlite'}")
    pred = np.random.default_rng(3).random((50, 4)).astype(np.float32)
    store.save_runs(store.experiment_id("e"), [(Spec(), {"status": "ok", "predictions": pred,
                                                         "eval_labels": np.arange(50), "metrics": {}})])
    (key, lazy), = store.iter_arrays(["k1"])
    assert key == "k1" and np.array_equal(lazy.get("predictions"), pred)
    assert np.array_equal(arrays.unpack(codec.pack(pred, compress=False)), pred)
    import sqlite3
    blob = sqlite3.connect(tmp_path / "r.sqlite").execute("select predictions from driftlab_runs").fetchone()[0]
    assert blob[:6] == codec.NPY_MAGIC, "the store keeps arrays plain"
