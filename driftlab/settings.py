"""Whole-number settings read from the environment, with errors that name the variable and the fix."""

from __future__ import annotations

import os


def positive_int(name: str, *, example: int, error: type[ValueError] = ValueError) -> int | None:
    """``int(os.environ[name])`` when set, else None; a value that is not >= 1 raises ``error``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise error(f"{name}: '{raw}' is not a positive whole number; unset it or use e.g. {example}")
    return value
