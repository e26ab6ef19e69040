"""The "Tuner's optimism" section's rows, shared by the Markdown and HTML reports (each escapes them).

Every number is formatted from report.json's ``optimism`` block with ``fmt.num``
(4 decimals), so the tables show exactly what the JSON holds, rounded.
"""

from __future__ import annotations

from typing import Any

from driftlab.report import fmt

TITLE = "Tuner's optimism"
HEADERS = ["figure", "value"]


def _z(value: Any) -> str:
    return fmt.DASH if not isinstance(value, (int, float)) else f"{value:.2f}"


def optimism_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """(sentences, rows of plain text) for the section; None when the report has no optimism block."""
    o = result.get("optimism")
    if not isinstance(o, dict):
        return None
    r = o.get("retrained") or {}
    p = o.get("pick") or {}
    levels = r.get("levels") or {}
    metric = o.get("metric", "")
    verdict = {True: "distinguishable", False: "noise", None: fmt.DASH}.get(p.get("distinguishable"), fmt.DASH)
    rows = [
        [f"tuned {metric} (best trial {o.get('best_trial', fmt.DASH)}, {o.get('direction', '')})",
         fmt.num(o.get("tuned_value"))],
        [f"retrained mean on {o.get('reference', '')}", fmt.num(r.get("mean"))],
        ["retrained seed SD", fmt.num(r.get("sd"))],
        ["seed points (runs)", f"{r.get('n_levels', 0)} ({r.get('n_runs', 0)})"],
        ["levels init / shuffle / split",
         " / ".join(str(levels.get(k, fmt.DASH)) for k in ("init", "shuffle", "split"))],
        ["gap (positive: tuned looks better)", fmt.num(o.get("gap"))],
        ["gap 95% CI", fmt.ci(o.get("gap_ci95"))],
        ["gap ÷ seed SD", _z(o.get("gap_z"))],
        ["verdict", str(o.get("verdict") or fmt.DASH)],
        ["best − second-best trial", fmt.num(p.get("best_minus_second"))],
        ["√2 · seed SD", fmt.num(p.get("noise_sd"))],
        ["(best − second) ÷ (√2 · SD)", _z(p.get("z"))],
        ["the pick", verdict],
    ]
    return list(o.get("sentences") or []), rows
