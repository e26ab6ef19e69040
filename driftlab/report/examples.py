"""Report sections for the per-example figures (churn, Jordan's check) and the determinism switch.

``markdown(result)`` / ``html(result)`` return the sections (empty when the report has none);
``switch_markdown`` / ``switch_html`` the determinism-switch table and the verdict in words.
"""

from __future__ import annotations

from html import escape
from typing import Any

from driftlab.report import fmt
from driftlab.report.svg_hist import histogram

VERDICT_WORDS = {
    "removes": "determinism on removes all run-to-run variance: repeats with it off differ, repeats with it on "
               "are bitwise identical.",
    "nothing_to_remove": "nothing to remove — repeats with determinism off were already bitwise identical on this "
                         "machine, so op determinism removed no variance here (it may still change the arithmetic: "
                         "see the switch row).",
    "partial": "partial — repeats with determinism on still differ: some kernels stay nondeterministic.",
    "not_measured": "not measured — the plan has no repeats in both modes.",
}
JORDAN_WORDS = {"independent": "as independent flips predict", "excess": "more than independent flips: real "
                "quality differences", "deficit": "less than independent flips: runs trade errors",
                "no_flips": "no flips", "undefined": "undefined"}


def _e(value: Any) -> str:
    return escape(str(value))


def _md_cell(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(map(_md_cell, headers)) + " |", "|" + "---|" * len(headers)] + \
        ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _rows_text(rows: list[int], limit: int = 8) -> str:
    if not rows:
        return "none"
    return ", ".join(str(i) for i in rows[:limit]) + (f" … ({len(rows)} in JSON)" if len(rows) > limit else "")


def switch_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    sw = (result.get("determinism") or {}).get("switch") or {}
    if not sw.get("compared"):
        return None
    task = result["task"]
    headers = ["comparison", "runs compared", "identical weights", "Δ metric (mean, off − on)", "max abs Δ",
               "disagreement" if task == "classification" else "RMS prediction diff (target units)",
               "fit time on ÷ off"]
    return headers, [["determinism on vs off (same seeds)", str(sw["compared"]),
                      f"{sw['identical']} of {sw['compared']} ({fmt.pct(sw.get('identical_share'), 0)})",
                      fmt.num(sw.get("metric_delta_mean")), fmt.num(sw.get("metric_delta_max_abs")),
                      fmt.dis(sw.get("disagreement"), task), fmt.ratio(sw.get("fit_time_ratio_on_off"))]]


def _verdict(result: dict[str, Any]) -> str:
    v = (result.get("determinism") or {}).get("verdict") or "not_measured"
    return f"Verdict: {VERDICT_WORDS.get(v, v)}"


def switch_markdown(result: dict[str, Any]) -> list[str]:
    lines = ["", f"- {_verdict(result)}"]
    table = switch_rows(result)
    if table:
        lines += ["", *_md_table(*table)]
    return lines


def switch_html(result: dict[str, Any]) -> str:
    table = switch_rows(result)
    return f"<p>{_e(_verdict(result))}</p>" + (_html_table(*table) if table else "")


def _churn_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    churn = result.get("churn") or {}
    if not churn:
        return None
    if result["task"] == "classification":
        headers = ["source", "rows that flip", "mean flip rate", "max flip rate", "most unstable rows"]
        rows = [[name, fmt.pct(c["flip_share"]), fmt.pct(c["flip_rate_mean"]), fmt.pct(c["flip_rate_max"]),
                 _rows_text(c["unstable_rows"])] for name, c in churn.items()]
    else:
        headers = ["source", "rows that change", "per-row prediction SD (RMS, target units)", "max per-row SD",
                   "most unstable rows"]
        rows = [[name, fmt.pct(c["changed_share"]), fmt.num(c["row_sd_rms"]), fmt.num(c["row_sd_max"]),
                 _rows_text(c["unstable_rows"])] for name, c in churn.items()]
    return headers, rows


def _jordan_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    j = {k: v for k, v in (result.get("jordan") or {}).items() if isinstance(v, dict) and "verdict" in v}
    if not j:
        return None
    headers = ["source", "observed var(accuracy)", "predicted (independent flips)", "ratio", "95% CI", "df",
               "verdict"]
    rows = [["seed (pooled)" if k == "seed" else k, fmt.num(v["observed_var"], 8), fmt.num(v["predicted_var"], 8),
             fmt.num(v["ratio"], 2) if v["ratio"] is not None else fmt.DASH, fmt.ci(v["ci95"], 2), str(v["df"]),
             JORDAN_WORDS.get(v["verdict"], v["verdict"])] for k, v in j.items()]
    return headers, rows


CHURN_NOTE = ("Churn: a row flips when the runs of a group predict more than one class for it; its flip rate is the "
              "share of run pairs that disagree there (the mean over rows is the source's disagreement). "
              "Regression: the per-row SD of predictions across runs instead (no flips).")
JORDAN_NOTE = ("Jordan's check: predicted var = Σᵢ p̂ᵢ(1−p̂ᵢ)·k/(k−1) / n², the variance of accuracy if each run got "
               "row i right independently with probability pᵢ; ratio = observed ÷ predicted, CI from χ² with the "
               "source's df. 1 inside the CI: no evidence that runs differ in real quality.")


def markdown(result: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    churn = _churn_rows(result)
    if churn:
        lines += ["", f"## Per-example churn (n={result['metric']['n_eval']} eval rows)", "", *_md_table(*churn),
                  "", CHURN_NOTE]
    jordan = _jordan_rows(result)
    if jordan:
        lines += ["", "## Jordan's check: is seed variance just independent per-example flips?", "",
                  *_md_table(*jordan), "", JORDAN_NOTE]
    return lines


def html(result: dict[str, Any]) -> str:
    parts: list[str] = []
    churn = _churn_rows(result)
    if churn:
        cls = result["task"] == "classification"
        plots = [histogram(c["histogram"]["edges"], c["histogram"]["counts"], title=f"per-row flip rate · {name}"
                           if cls else f"per-row prediction SD · {name}",
                           axis="flip rate (share of run pairs)" if cls else "SD of predictions (target units)",
                           percent=cls) for name, c in (result.get("churn") or {}).items()]
        parts.append(f"<h2>Per-example churn (n={_e(result['metric']['n_eval'])} eval rows)</h2>"
                     f"<div class='grid'>{''.join(plots)}</div>{_html_table(*churn)}"
                     f"<p class='note'>{_e(CHURN_NOTE)}</p>")
    jordan = _jordan_rows(result)
    if jordan:
        parts.append("<h2>Jordan's check: is seed variance just independent per-example flips?</h2>"
                     f"{_html_table(*jordan)}<p class='note'>{_e(JORDAN_NOTE)}</p>")
    return "".join(parts)
