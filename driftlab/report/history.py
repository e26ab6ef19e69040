"""History across runs: drift per profile over time and across library/driver versions.

Reads every report stored in the results DB (``Store.iter_reports``), one row
per (report, profile), and flags a jump between consecutive reports of the
same experiment and profile when:

- bitwise identity with the reference is lost or regained (identical share
  crosses 100%);
- prediction disagreement moves by more than JUMP_DISAGREEMENT_ABS and by
  more than JUMP_RELATIVE of its previous value;
- drift / seed noise moves by more than JUMP_DRIFT_RATIO.

Version changes between the two reports (TensorFlow, Keras, CUDA, cuDNN,
driver, GPU, CPU model, on the profile or the reference) are listed beside
each row, so a jump reads "after tensorflow 2.20.0 → 2.21.0".

``executions_markdown`` lists the newest executions (``Store.list_executions``)
with their status; an abandoned one reads ``abandoned (last seen <time>)``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, Iterable

JUMP_DISAGREEMENT_ABS = 0.01  # one percentage point of eval predictions
JUMP_RELATIVE = 1.0  # and at least a doubling (or halving to zero) of the previous value
JUMP_DRIFT_RATIO = 0.5  # half a seed-noise SD
TRACKED = ("tensorflow", "keras", "numpy", "cuda", "cudnn", "driver", "gpu", "cpu_model")


def _versions(report: dict[str, Any], profile: str) -> dict[str, Any]:
    stored = (report.get("versions") or {}).get(profile)
    if stored is None:  # schema driftlab.report/1 kept a brief fingerprint per compared profile
        stored = (report.get("hardware", {}).get(profile) or {}).get("fingerprint") or {}
    return {k: stored.get(k) for k in TRACKED if stored.get(k) is not None}


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value or "")


def utc_text(value: Any) -> str:
    """A stored time as ``2026-01-02 10:00:03 UTC`` (seconds); anything else as text."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value or "—")


def execution_status(row: dict[str, Any]) -> str:
    """An execution's status as shown: ``abandoned (last seen <time>)`` for an abandoned one."""
    status = str(row.get("status") or "")
    if status == "abandoned":
        return f"abandoned (last seen {utc_text(row.get('last_seen'))})"
    return status


def executions_markdown(rows: list[dict[str, Any]]) -> str:
    """The executions as a Markdown section (one line each, oldest first)."""
    from driftlab.report.markdown import _md

    lines = ["", "## Executions", "", "| id | started | experiment | campaign | where | status |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['id']} | {utc_text(r.get('started_at'))} | {_md(r.get('experiment'))} | "
                     f"{_md(r.get('campaign'))} | {_md(r.get('where'))} | {_md(execution_status(r))} |")
    return "\n".join(lines) + "\n"


def history_rows(reports: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (stored report, non-reference profile), oldest first, with jumps flagged."""
    rows: list[dict[str, Any]] = []
    for item in reports:
        report = item["report"]
        ref = report.get("reference")
        for prof, h in (report.get("hardware") or {}).items():
            rows.append({
                "experiment": item.get("experiment"), "campaign": item.get("campaign"),
                "created_at": _when(item.get("created_at")), "report_id": item.get("id"),
                "gate": item.get("gate"), "profile": prof, "reference": ref, "compared": h.get("compared", 0),
                "disagreement": h.get("disagreement"), "identical_share": h.get("identical_share"),
                "drift_ratio": h.get("drift_to_seed_noise"), "metric_delta_mean": h.get("metric_delta_mean"),
                "versions": _versions(report, prof), "reference_versions": _versions(report, ref),
                "task": report.get("task") or (report.get("experiment") or {}).get("task"),
            })
    by_series: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_series[(row["experiment"], row["profile"])].append(row)
    for series in by_series.values():
        previous = None
        for row in series:
            row["changes"], row["jumps"] = [], []
            if previous is not None:
                row["changes"] = version_changes(previous, row)
                row["jumps"] = jumps(previous, row)
            previous = row
    return rows


def version_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """``["tensorflow 2.20.0 → 2.21.0", "reference driver 550 → 560"]`` between two rows."""
    out = []
    for field, prefix in (("versions", ""), ("reference_versions", "reference ")):
        a, b = before.get(field) or {}, after.get(field) or {}
        for k in TRACKED:
            if a.get(k) != b.get(k) and (a.get(k) is not None or b.get(k) is not None):
                out.append(f"{prefix}{k} {a.get(k, '—')} → {b.get(k, '—')}")
    return out


def jumps(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Why ``after`` differs from ``before`` by more than run-to-run wobble (module docstring)."""
    out = []
    a, b = before.get("identical_share"), after.get("identical_share")
    if a is not None and b is not None and (a == 1.0) != (b == 1.0):
        out.append("bitwise identity with the reference " + ("lost" if a == 1.0 else "regained")
                   + f" ({a:.0%} → {b:.0%})")
    a, b = before.get("disagreement"), after.get("disagreement")
    if a is not None and b is not None and abs(b - a) > JUMP_DISAGREEMENT_ABS and abs(b - a) > JUMP_RELATIVE * a:
        out.append(f"disagreement {a:.4g} → {b:.4g}")
    a, b = before.get("drift_ratio"), after.get("drift_ratio")
    if a is not None and b is not None and abs(b - a) > JUMP_DRIFT_RATIO:
        out.append(f"drift {a:.2f}× → {b:.2f}× seed noise")
    return out


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The history as a Markdown table (one line per report and profile)."""
    from driftlab.report import fmt
    from driftlab.report.markdown import _md

    lines = ["# driftlab history: drift per profile across runs", "",
             "| when | experiment | campaign | profile | vs | disagreement | identical weights | drift ÷ seed noise "
             "| gate | versions changed | jump |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {_md(r['created_at'])} | {_md(r['experiment'])} | {_md(r['campaign'])} | {_md(r['profile'])} "
                     f"| {_md(r['reference'])} | {fmt.dis(r['disagreement'], r.get('task') or 'classification')} | "
                     f"{fmt.pct(r['identical_share'], 0)} | {fmt.ratio(r['drift_ratio'])} | {_md(r['gate'])} | "
                     f"{_md('; '.join(r['changes']))} | {_md('; '.join(r['jumps'])) or ''} |")
    flagged = [r for r in rows if r["jumps"]]
    lines += ["", f"{len(flagged)} jump(s) flagged over {len(rows)} row(s)."]
    return "\n".join(lines) + "\n"


def to_html(rows: list[dict[str, Any]]) -> str:
    """A self-contained HTML page: disagreement over time per profile, and the table."""
    from html import escape

    from driftlab.report import fmt, svg
    from driftlab.report.html import CSP, STYLE

    series: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        series[(r["experiment"], r["profile"])].append(r["disagreement"] if r["disagreement"] is not None
                                                        else float("nan"))
    plots = "".join(svg.curves([(f"{p}", v)], title=f"{e} · {p}: disagreement per report", axis="report (oldest → newest)")
                    for (e, p), v in series.items())
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in (
            r["created_at"], r["experiment"], r["campaign"], r["profile"], r["reference"],
            fmt.dis(r["disagreement"], r.get("task") or "classification"), fmt.pct(r["identical_share"], 0),
            fmt.ratio(r["drift_ratio"]), r["gate"], "; ".join(r["changes"]), "; ".join(r["jumps"]))) + "</tr>"
        for r in rows)
    head = "".join(f"<th>{h}</th>" for h in ("when", "experiment", "campaign", "profile", "vs", "disagreement",
                                             "identical weights", "drift ÷ seed noise", "gate", "versions changed",
                                             "jump"))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" '
            f'content="{CSP}"><title>driftlab history</title><style>{STYLE}</style></head><body>'
            f"<h1>driftlab history: drift per profile across runs</h1><div class='grid'>{plots}</div>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>")
