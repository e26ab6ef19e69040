"""Compact, exact encodings of arrays for records that cross processes and databases."""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import math
import re
import threading
import zlib

import numpy as np


def pack(array: np.ndarray | None, *, compress: bool = True) -> bytes | None:
    """Lossless: dtype and shape travel with the bytes (npy format), zlib-compressed, or with
    ``compress=False`` plain: read back several times faster, for ~10% more bytes on model outputs
    (float mantissas hardly compress). ``unpack`` reads both."""
    if array is None:
        return None
    buf = io.BytesIO()
    array = np.asarray(array)
    np.save(buf, np.ascontiguousarray(array).reshape(array.shape), allow_pickle=False)  # 0-d stays 0-d
    return zlib.compress(buf.getvalue(), level=3) if compress else buf.getvalue()


NPY_MAGIC = b"\x93NUMPY"
# The header ``np.save`` writes for a plain (non-structured) dtype. ``np.load`` parses headers with
# ``ast.literal_eval``, which CPython 3.11 cannot run in two threads at once (a tuning task's workers
# decode records concurrently: "SystemError: AST constructor recursion depth mismatch"), so the
# headers ``pack`` writes are read here with a pattern and only other ones go to ``np.load``.
_HEADER = re.compile(
    r"\{'descr': '([<>|=][A-Za-z]\d*(?:\[\w+\])?)', 'fortran_order': (True|False), "
    r"'shape': \(((?:\d+, )*\d+,?|)\), \}[ ]*\n?")
_NP_LOAD_LOCK = threading.Lock()


def npy_data_offset(raw: bytes | bytearray | memoryview) -> int | None:
    """Where the array data starts in ``.npy`` bytes; None if ``raw`` is too short or not ``.npy``."""
    if len(raw) < 10 or raw[:6] != NPY_MAGIC:
        return None
    if raw[6] == 1:
        end = 10 + int.from_bytes(raw[8:10], "little")
    elif raw[6] == 2 and len(raw) >= 12:
        end = 12 + int.from_bytes(raw[8:12], "little")
    else:
        return None
    return end if len(raw) >= end else None


@functools.lru_cache(maxsize=256)
def npy_layout(header: bytes) -> tuple[np.dtype, bool, tuple[int, ...]] | None:
    """(dtype, Fortran order, shape) of a ``.npy`` header (magic included), read without ``ast``;
    None for what only ``np.load`` reads (structured or object dtypes, other versions)."""
    start = 10 if header[6:7] == b"\x01" else 12
    try:
        match = _HEADER.fullmatch(header[start:].decode("latin1"))
        dtype = np.dtype(match.group(1)) if match else None
    except TypeError:
        return None
    if dtype is None or dtype.hasobject:
        return None
    shape = tuple(int(n) for n in match.group(3).split(",") if n.strip())
    return dtype, match.group(2) == "True", shape


def npy_bytes(blob: bytes | memoryview) -> bytes | memoryview:
    """The ``.npy`` bytes of what ``pack`` wrote: a plain blob as it is, a compressed one inflated."""
    return blob if blob[:6] == NPY_MAGIC else zlib.decompress(blob)


def from_npy(raw: bytes | bytearray | memoryview) -> np.ndarray | None:
    """The array in ``.npy`` bytes when ``npy_layout`` reads its header (a view of ``raw``), else None."""
    offset = npy_data_offset(raw)
    layout = None if offset is None else npy_layout(bytes(raw[:offset]))
    if layout is None:
        return None
    dtype, fortran, shape = layout
    count = math.prod(shape)
    if len(raw) < offset + count * dtype.itemsize:
        return None
    flat = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)


def unpack(blob: bytes | None) -> np.ndarray | None:
    """The array ``pack`` stored, writable; safe to call from several threads at once."""
    if blob is None:
        return None
    raw = bytearray(npy_bytes(blob))
    array = from_npy(raw)
    if array is not None:
        return array
    with _NP_LOAD_LOCK:  # np.load's header parser is not thread-safe on CPython 3.11
        return np.load(io.BytesIO(bytes(raw)), allow_pickle=False)


def pack_text(array: np.ndarray | None) -> str | None:
    blob = pack(array)
    return None if blob is None else base64.b64encode(blob).decode("ascii")


def unpack_text(text: str | None) -> np.ndarray | None:
    return None if text is None else unpack(base64.b64decode(text))


def weights_digest(weights: list[np.ndarray]) -> str:
    """Bitwise identity of a list of weight arrays (shapes and dtypes included)."""
    h = hashlib.sha256()
    for w in weights:
        w = np.ascontiguousarray(w)
        h.update(f"{w.dtype.str}{w.shape}".encode())
        h.update(w.tobytes())
    return h.hexdigest()[:32]


# Above this many parameters a record keeps a random projection of the weights
# (Johnson-Lindenstrauss: pairwise distances preserved to a few percent) instead
# of the full vector, so that records stay small for big models.
MAX_STORED_PARAMS = 250_000
SKETCH_DIM = 2048


def weights_vector(weights: list[np.ndarray]) -> tuple[np.ndarray, str]:
    flat = np.concatenate([np.ravel(w).astype(np.float32) for w in weights]) if weights else np.zeros(0, np.float32)
    if flat.size <= MAX_STORED_PARAMS:
        return flat, "full"
    rng = np.random.default_rng(20240531)
    sketch = np.zeros(SKETCH_DIM, dtype=np.float64)
    for start in range(0, flat.size, 65536):
        chunk = flat[start:start + 65536].astype(np.float64)
        proj = rng.standard_normal((SKETCH_DIM, chunk.size)) / np.sqrt(SKETCH_DIM)
        sketch += proj @ chunk
    return sketch.astype(np.float32), f"jl{SKETCH_DIM}"
