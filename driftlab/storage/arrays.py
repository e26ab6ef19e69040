"""Reading stored run arrays when they are needed, and fast: the read side of ``codec.pack``.

``codec.pack`` stores an array as zlib-compressed ``.npy`` bytes. Here:

- ``unpack`` decodes a blob to the array ``codec.unpack`` gives (same dtype, shape and values,
  read-only), parsing each distinct ``.npy`` header once instead of once per array;
- ``LazyArrays`` holds one run's blobs and decodes each on first use; eval labels, the same
  for every run of a campaign, are decoded once.
"""

from __future__ import annotations

import functools
import io
import math
import zlib
from typing import Any, Mapping

import numpy as np

from driftlab.runs import codec

MAGIC = b"\x93NUMPY"
SHARED_MAX_BYTES = 64 * 1024  # blobs this small and identical across runs (the eval labels) are decoded once


def _data_offset(raw: bytes) -> int | None:
    """Where the array data starts in ``.npy`` bytes; None if ``raw`` is too short or not ``.npy``."""
    if len(raw) < 10 or not raw.startswith(MAGIC):
        return None
    if raw[6] == 1:
        end = 10 + int.from_bytes(raw[8:10], "little")
    elif len(raw) >= 12:
        end = 12 + int.from_bytes(raw[8:12], "little")
    else:
        return None
    return end if len(raw) >= end else None


@functools.lru_cache(maxsize=256)
def _layout(header: bytes) -> tuple[np.dtype, bool, tuple[int, ...]] | None:
    """(dtype, Fortran order, shape) of a ``.npy`` header; None for what only ``np.load`` reads."""
    fp = io.BytesIO(header)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            return None
    except ValueError:
        return None
    return None if dtype.hasobject else (dtype, bool(fortran), tuple(int(n) for n in shape))


def unpack(blob: bytes | None) -> np.ndarray | None:
    """The array ``codec.unpack(blob)`` gives, read-only, without re-parsing a known header."""
    if blob is None:
        return None
    raw = zlib.decompress(blob)
    offset = _data_offset(raw)
    layout = None if offset is None else _layout(raw[:offset])
    if layout is None:
        return codec.unpack(blob)
    dtype, fortran, shape = layout
    flat = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=offset)
    return flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)


@functools.lru_cache(maxsize=8)
def _unpack_shared(blob: bytes) -> np.ndarray | None:
    return unpack(blob)


class LazyArrays:
    """One run's stored arrays (``predictions``, ``eval_labels``, ``weights``), each decoded on first use."""

    def __init__(self, blobs: Mapping[str, bytes | None]):
        self._blobs = dict(blobs)
        self._arrays: dict[str, Any] = {}

    def get(self, name: str) -> np.ndarray | None:
        if name not in self._arrays:
            blob = self._blobs.pop(name, None)
            small = blob is not None and len(blob) <= SHARED_MAX_BYTES and name == "eval_labels"
            self._arrays[name] = _unpack_shared(bytes(blob)) if small else unpack(blob)
        return self._arrays[name]

    def __getitem__(self, name: str) -> np.ndarray | None:
        return self.get(name)
