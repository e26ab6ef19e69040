"""The Markdown report: the same content as the HTML one without plots, for the KFP UI and terminals."""

from __future__ import annotations

import json
from typing import Any

from driftlab.report import fmt


def _md(text: Any) -> str:
    """Escape what Markdown tables and HTML would interpret in a user string."""
    return (str(text).replace("&", "&amp;").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\n", " "))


def _sources(result: dict[str, Any]) -> list[str]:
    metric, task = result["metric"]["name"], result["task"]
    lines = [f"## Sources of variation ({metric} on the fixed evaluation set, n={result['metric']['n_eval']})", "",
             "| source | metric SD | 95% CI (bootstrap) | 95% CI (normal) | noise floor | "
             + ("disagreement" if task == "classification" else "RMS pred. diff")
             + " | max abs diff | pred. correlation | identical weights | weight distance | loss curves part at epoch |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in result["sources"].items():
        if not s.get("varied"):
            lines.append(f"| {name} | {_md(s.get('note', 'not varied'))} | | | | | | | | | |")
            continue
        lines.append(f"| {name} | {fmt.num(s['metric_sd'])} | {fmt.ci(s.get('metric_sd_ci95'))} | "
                     f"{fmt.ci(s.get('metric_sd_ci95_normal'))} | {fmt.num(s.get('noise_floor'))} | "
                     f"{fmt.dis(s.get('disagreement'), task)} | {fmt.num(s.get('max_abs_diff'))} | "
                     f"{fmt.num(s.get('correlation'))} | {fmt.pct(s.get('identical_share'), 0)} | "
                     f"{fmt.num(s.get('weight_distance'))} | {fmt.num(s.get('first_parting_epoch'))} |")
    var = result.get("variance") or {}
    if var.get("shares"):
        lines += ["", "## Share of variance by source", "", "| component | variance | share |", "|---|---|---|"]
        for k, v in sorted(var["shares"].items(), key=lambda kv: -(kv[1] or 0)):
            lines.append(f"| {k} | {fmt.num(var['variances'].get(k), 8)} | {fmt.pct(v)} |")
        lines += ["", f"Method: {var.get('method')}."]
    return lines


def _hardware(result: dict[str, Any]) -> list[str]:
    task = result["task"]
    lines = ["", f"## Hardware profiles vs the reference ({_md(result['reference'])})", ""]
    if not result["hardware"]:
        return lines + ["Only the reference profile ran: hardware not varied."]
    lines += ["| profile | runs compared | Δ metric (mean) | max abs Δ | "
              + ("disagreement" if task == "classification" else "RMS pred. diff")
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


def to_markdown(result: dict[str, Any]) -> str:
    """The report as Markdown (user strings escaped)."""
    exp = result.get("experiment", {})
    lines = [f"# driftlab report: {_md(exp.get('name', ''))} ({_md(exp.get('campaign', ''))})", ""]
    lines += [f"- {_md(s)}" for s in result["summary"]]
    lines += ["", f"**Gate: {result['gate']['status']}** · reference profile `{_md(result['reference'])}` · "
              f"{result['counts']['ok']} runs ok, {result['counts']['failed']} failed, "
              f"{result['counts']['diverged']} diverged", ""]
    lines += _sources(result) + _hardware(result)
    for skipped in exp.get("skipped_profiles", []):
        lines.append(f"- Skipped `{_md(skipped['name'])}`: {_md(skipped['reason'])}")
    lines += _determinism(result)
    if result["gate"]["checks"]:
        lines += ["", "## Tolerance gate", "", "| check | where | value | budget | status |", "|---|---|---|---|---|"]
        for c in result["gate"]["checks"]:
            lines.append(f"| {_md(c['check'])} | {_md(c['where'])} | {fmt.num(c['value'])} | "
                         f"{_md(c['op'])} {fmt.num(c['budget'])} | {c['status']} |")
    tuning = result.get("tuning")
    if tuning and tuning.get("best_params") is not None:
        lines += ["", "## Tuning", "",
                  f"- Best value {fmt.num(tuning.get('best_value'))} (trial {tuning.get('best_trial')}), "
                  f"{tuning.get('n_complete')} complete, {tuning.get('n_pruned')} pruned, {tuning.get('n_failed')} failed.",
                  f"- Best parameters: `{_md(json.dumps(tuning.get('best_params'), sort_keys=True))}`"]
    return "\n".join(lines) + "\n"
