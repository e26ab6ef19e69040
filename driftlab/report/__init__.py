"""Reports: JSON for machines (schema in docs/report-schema.md), Markdown for the KFP UI, HTML for people.

``write_all(result, out_dir)`` writes all three and returns their paths.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from driftlab.report.html import to_html
from driftlab.report.markdown import to_markdown

__all__ = ["clean", "to_html", "to_markdown", "write_all"]


def clean(value: Any) -> Any:
    """JSON-ready copy: NaN/inf become null (JSON has no NaN), tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def write_all(result: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, str]:
    """Write report.json, report.md and report.html into out_dir; returns ``{"json"|"markdown"|"html": path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md", "html": out / "report.html"}
    _atomic_write(paths["json"], json.dumps(clean(result), indent=2, sort_keys=True, default=str))
    _atomic_write(paths["markdown"], to_markdown(result))
    _atomic_write(paths["html"], to_html(result))
    return {k: str(v) for k, v in paths.items()}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
