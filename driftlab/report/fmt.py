"""Number formatting shared by the Markdown and HTML reports: never prints NaN."""

from __future__ import annotations

import math
from typing import Any

DASH = "—"


def num(value: Any, digits: int = 4) -> str:
    """Fixed digits; tiny or huge values in scientific notation; None/NaN as a dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e6):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def pct(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    return f"{value:.{digits}%}"


def ci(interval: Any, digits: int = 4) -> str:
    if not interval:
        return DASH
    return f"{num(interval[0], digits)}–{num(interval[1], digits)}"


def ratio(value: Any) -> str:
    return DASH if value is None else f"{value:.2f}×"


def dis(value: Any, task: str) -> str:
    """Disagreement as a share (classification) or an RMS difference (regression)."""
    return pct(value) if task == "classification" else num(value)
