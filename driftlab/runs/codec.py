"""Compact, exact encodings of arrays for records that cross processes and databases."""

from __future__ import annotations

import base64
import hashlib
import io
import zlib

import numpy as np


def pack(array: np.ndarray | None) -> bytes | None:
    """Lossless: dtype and shape travel with the bytes (npy format), zlib-compressed."""
    if array is None:
        return None
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return zlib.compress(buf.getvalue(), level=3)


def unpack(blob: bytes | None) -> np.ndarray | None:
    if blob is None:
        return None
    return np.load(io.BytesIO(zlib.decompress(blob)), allow_pickle=False)


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
