"""Reading stored run arrays when they are needed, and fast: the read side of ``codec.pack``.

``codec.pack`` stores an array as ``.npy`` bytes (the store: plain; older records: zlib-compressed). Here:

- ``unpack`` decodes a blob to the array ``codec.unpack`` gives (same dtype, shape and values,
  read-only), parsing each distinct ``.npy`` header once (``codec.npy_layout``);
- ``LazyArrays`` holds one run's blobs and decodes each on first use; eval labels, the same
  for every run of a campaign, are decoded once.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import numpy as np

from driftlab.runs import codec

SHARED_MAX_BYTES = 64 * 1024  # blobs this small and identical across runs (the eval labels) are decoded once


def unpack(blob: bytes | None) -> np.ndarray | None:
    """The array ``codec.unpack(blob)`` gives, read-only (a view of the blob or of its inflated bytes, no copy)."""
    if blob is None:
        return None
    array = codec.from_npy(codec.npy_bytes(blob))
    return codec.unpack(blob) if array is None else array


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
