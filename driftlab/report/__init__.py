"""Reports: JSON for machines (schema in docs/report-schema.md), Markdown for the KFP UI, HTML for people.

``write_all(result, out_dir)`` writes all three and returns their paths.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any

from driftlab import settings
from driftlab.errors import DriftlabError
from driftlab.report.html import to_html
from driftlab.report.markdown import to_markdown

__all__ = ["ReportWriteError", "clean", "to_html", "to_markdown", "write_all"]


def clean(value: Any) -> Any:
    """JSON-ready copy: NaN/inf become null (JSON has no NaN), tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


class ReportWriteError(DriftlabError, OSError):
    """The report folder cannot be written (read-only, full, no permission); ``errno`` says which."""


def write_all(result: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, str]:
    """Write report.json, report.md and report.html into out_dir; returns ``{"json"|"markdown"|"html": path}``.

    All three are written to temporary files first and renamed only when all
    three are complete, so a full or read-only disk leaves the previous report
    as it was and no half-written file behind.

    Raises:
        ReportWriteError: out_dir cannot be written; the message names it and the fix.
    """
    out = Path(out_dir)
    paths = {"json": out / "report.json", "markdown": out / "report.md", "html": out / "report.html"}
    texts = {"json": json.dumps(clean(result), indent=2, sort_keys=True, default=str),
             "markdown": to_markdown(result), "html": to_html(result)}
    tmps = {k: p.with_name(p.name + ".tmp") for k, p in paths.items()}
    try:
        out.mkdir(parents=True, exist_ok=True)
        try:
            for k, tmp in tmps.items():
                tmp.write_text(texts[k], encoding="utf-8")
        except OSError:
            for tmp in tmps.values():
                with contextlib.suppress(OSError):
                    tmp.unlink()
            raise
        for k, tmp in tmps.items():
            os.replace(tmp, paths[k])
    except OSError as exc:
        raise ReportWriteError(exc.errno, f"cannot write the report to {out}: {exc.strerror or exc}; "
                                          f"{another_folder_advice()}") from None
    return {k: str(v) for k, v in paths.items()}


def another_folder_advice() -> str:
    """How to write the report elsewhere, for the way this process was started.

    ``driftlab run`` chooses the report folder itself (under ``--home``) and sets it, with its log
    file, for its tasks: there the advice is ``--home``. A bare aggregate task is told the variable.
    """
    if settings.LOG_FILE.raw():  # set only by `driftlab run`, for its tasks
        home = settings.HOME.raw() or "the home folder"
        return ("free space there, or run the same `driftlab run` command again with --home DIR, DIR a "
                f"writable folder on a disk with room (copy driftlab.sqlite from {home} into DIR first to keep "
                "the finished runs, unless they are in a database URL). The run records are safe in the results "
                "database")
    return (f"free space there, or set {settings.REPORT_DIR.name} to a writable folder and run the aggregate "
            "step again. The run records are safe in the results database")
