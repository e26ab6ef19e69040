"""The Markdown report: the same content as the HTML one without plots, for the KFP UI and terminals."""

from __future__ import annotations

from typing import Any

from driftlab.report import examples, fmt
from driftlab.report.optimism import HEADERS as OPTIMISM_HEADERS, TITLE as OPTIMISM_TITLE, optimism_rows
from driftlab.report.tuning import tuning_view


def _md(text: Any) -> str:
    """Escape what Markdown tables and HTML would interpret in a user string."""
    return (str(text).replace("&", "&amp;").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\n", " "))


def _sources(result: dict[str, Any]) -> list[str]:
    metric, task = result["metric"]["name"], result["task"]
    lines = [f"## Sources of variation ({metric} on the fixed evaluation set, n={result['metric']['n_eval']})", "",
             "| source | metric SD | 95% CI (L levels) | levels, eff. df | noise floor | "
             + ("disagreement" if task == "classification" else "RMS prediction diff (target units)")
             + " | max abs diff | pred. correlation | identical weights | weight distance | loss curves part at epoch |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in result["sources"].items():
        if not s.get("varied"):
            lines.append(f"| {name} | {_md(s.get('note', 'not varied'))} | | | | | | | | | |")
            continue
        lines.append(f"| {name} | {fmt.num(s['metric_sd'])} | {fmt.ci(s.get('metric_sd_ci95'))} | "
                     f"{s.get('levels')}, {fmt.num(s.get('metric_df_effective'), 1)} | {fmt.num(s.get('noise_floor'))} | "
                     f"{fmt.dis(s.get('disagreement'), task)} | {fmt.num(s.get('max_abs_diff'))} | "
                     f"{fmt.num(s.get('correlation'))} | {fmt.pct(s.get('identical_share'), 0)} | "
                     f"{fmt.num(s.get('weight_distance'))} | {fmt.num(s.get('first_parting_epoch'))} |")
    var = result.get("variance") or {}
    if var.get("shares"):
        lines += ["", "## Share of variance by source", "", "| component | variance | share | 95% CI (bootstrap of the fit) |",
                  "|---|---|---|---|"]
        cis, notes = var.get("shares_ci95") or {}, var.get("share_notes") or {}
        for k, v in sorted(var["shares"].items(), key=lambda kv: -(kv[1] or 0)):
            ci = cis.get(k)
            lines.append(f"| {k} | {fmt.num(var['variances'].get(k), 8)} | {_md(notes[k]) if k in notes else fmt.pct(v)} | "
                         f"{f'{fmt.pct(ci[0])}–{fmt.pct(ci[1])}' if ci else fmt.DASH} |")
        lines += ["", f"Method: {var.get('method')}."]
    return lines


def _hardware(result: dict[str, Any]) -> list[str]:
    task = result["task"]
    lines = ["", f"## Hardware profiles vs the reference ({_md(result['reference'])})", ""]
    if not result["hardware"]:
        return lines + ["Only the reference profile ran: hardware not varied."]
    lines += ["| profile | runs compared | Δ metric (mean) | max abs Δ | "
              + ("disagreement" if task == "classification" else "RMS prediction diff (target units)")
              + " | max abs diff | identical weights | drift ÷ seed noise | drift ÷ noise floor |",
              "|---|---|---|---|---|---|---|---|---|"]
    for prof, h in result["hardware"].items():
        if not h.get("compared"):
            lines.append(f"| {_md(prof)} | 0 | {_md(h.get('note', ''))} | | | | | | |")
            continue
        lines.append(f"| {_md(prof)} | {h['compared']} | {fmt.num(h.get('metric_delta_mean'))} | "
                     f"{fmt.num(h.get('metric_delta_max_abs'))} | {fmt.dis(h.get('disagreement'), task)} | "
                     f"{fmt.num(h.get('max_abs_diff'))} | {fmt.pct(h.get('identical_share'), 0)} | "
                     f"{fmt.ratio(h.get('drift_to_seed_noise'))} | {fmt.ratio(h.get('drift_to_noise_floor'))} |")
    return lines


def _determinism(result: dict[str, Any]) -> list[str]:
    det = result["determinism"]
    lines = ["", "## Determinism on vs off", ""]
    for mode in ("on", "off"):
        rep = det.get(f"repeats_{mode}") or {}
        if rep.get("varied"):
            lines.append(f"- Repeats with determinism {mode}: {fmt.pct(rep['identical_share'], 0)} bitwise identical "
                         f"(max abs prediction difference {fmt.num(rep.get('max_abs_diff'))}).")
        else:
            lines.append(f"- Repeats with determinism {mode}: {rep.get('note', 'none')}.")
    lines.append(f"- Fit time, determinism on ÷ off: {fmt.ratio(det.get('fit_time_ratio_on_off'))}.")
    return lines


def _failures(result: dict[str, Any]) -> list[str]:
    groups = result.get("failures") or []
    if not groups:
        return []
    lines = ["## Failed runs", "", "Each distinct error once, with the last frames of your own code. "
             "Failed runs are left out of every statistic.", ""]
    for g in groups:
        lines += [f"- {g['count']} run(s) on {_md(', '.join(g.get('profiles') or []))}:", "",
                  "  ```", *(f"  {line}" for line in str(g.get("detail") or g["error"]).replace("```", "'''").splitlines()),
                  "  ```"]
    return lines + [""]


def to_markdown(result: dict[str, Any]) -> str:
    """The report as Markdown (user strings escaped)."""
    exp = result.get("experiment", {})
    lines = [f"# driftlab report: {_md(exp.get('name', ''))} ({_md(exp.get('campaign', ''))})", ""]
    lines += [f"- {_md(s)}" for s in result["summary"]]
    lines += ["", f"**Gate: {result['gate']['status']}** · reference profile `{_md(result['reference'])}` · "
              f"{result['counts']['ok']} runs ok, {result['counts']['failed']} failed, "
              f"{result['counts']['diverged']} diverged", ""]
    lines += _failures(result) + _sources(result) + _hardware(result)
    for skipped in exp.get("skipped_profiles", []):
        lines.append(f"- Skipped `{_md(skipped['name'])}`: {_md(skipped['reason'])}")
    lines += _determinism(result) + examples.switch_markdown(result) + examples.markdown(result)
    if result["gate"]["checks"]:
        lines += ["", "## Tolerance gate", "", "| check | where | value | budget | status |", "|---|---|---|---|---|"]
        for c in result["gate"]["checks"]:
            lines.append(f"| {_md(c['check'])} | {_md(c['where'])} | {fmt.num(c['value'])} | "
                         f"{_md(c['op'])} {fmt.num(c['budget'])} | {c['status']} |")
    lines += _tuning(result) + _optimism(result) + _top_k(result)
    return "\n".join(lines) + "\n"


def _top_k(result: dict[str, Any]) -> list[str]:
    """P(A beats B) for the top configurations (``top_k``)."""
    from driftlab.report.topk import CONFIG_HEADERS, PAIR_HEADERS, TITLE, top_k_rows

    view = top_k_rows(result)
    if view is None:
        return []
    sentence, configs, pairs = view
    lines = ["", f"## {TITLE}", "", _md(sentence), ""]
    for headers, rows in ((CONFIG_HEADERS, configs), (PAIR_HEADERS, pairs)):
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows] + [""]
    return lines


def _optimism(result: dict[str, Any]) -> list[str]:
    """The tuned value against retraining the same configuration (``optimism``)."""
    view = optimism_rows(result)
    if view is None:
        return []
    sentences, rows = view
    lines = ["", f"## {OPTIMISM_TITLE}", ""] + [_md(s) for s in sentences]
    lines += ["", "| " + " | ".join(OPTIMISM_HEADERS) + " |", "|---|---|"]
    return lines + [f"| {_md(a)} | {_md(b)} |" for a, b in rows]


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text`` (so the block cannot be closed early)."""
    longest, run = 0, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def _tuning(result: dict[str, Any]) -> list[str]:
    """The Tuning section: what was tuned, where the parameters came from, how to open the study."""
    view = tuning_view(result.get("tuning"))
    if view is None:
        return []
    lines = ["", "## Tuning", "", _md(view.sentence)]
    if not view.tuned:
        return lines
    if view.source:
        lines += ["", _md(view.source)]
    if view.params:
        lines += ["", "| parameter | best value |", "|---|---|"]
        lines += [f"| {_md(k)} | {_md(v)} |" for k, v in view.params]
    if view.top:
        lines += ["", f"{_md(view.top_title)}:", "", "| rank | trial | value | parameters |", "|---|---|---|---|"]
        lines += [f"| {rank} | {trial} | {value} | {_md(params)} |" for rank, trial, value, params in view.top]
    if view.commands:
        # Commands stay verbatim (a code block is never interpreted), so that they can be pasted.
        block = "\n".join(view.commands)
        fence = _fence(block)
        note = f" ({view.commands_note})" if view.commands_note else ""
        lines += ["", f"Open the study in Optuna's own tools{note}:", "", fence + "sh", block, fence]
    return lines
