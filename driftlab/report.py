"""Reports: JSON for machines (schema ``driftlab.report/1``) and Markdown for people and the KFP UI."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: Any) -> str:
    return "—" if value is None else f"{value:.1%}"


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def to_markdown(result: dict[str, Any]) -> str:
    exp = result.get("experiment", {})
    metric = result["metric"]["name"]
    lines = [f"# driftlab report: {_md_escape(exp.get('name', ''))} ({_md_escape(exp.get('campaign', ''))})", ""]
    lines += [f"- {_md_escape(s)}" for s in result["summary"]]
    lines += ["", f"**Gate: {result['gate']['status']}** · reference profile `{_md_escape(result['reference'])}` · "
              f"{result['counts']['ok']} runs ok, {result['counts']['failed']} failed, "
              f"{result['counts']['diverged']} diverged", ""]
    floor = result["metric"].get("noise_floor")
    lines += [f"## Sources of variation ({metric} on the fixed evaluation set, n={result['metric']['n_eval']})", "",
              "| source | metric SD | 95% CI | noise floor | disagreement | max abs diff | identical weights | loss curves part at epoch |",
              "|---|---|---|---|---|---|---|---|"]
    for name, s in result["sources"].items():
        if not s.get("varied"):
            lines.append(f"| {name} | not varied | | | | | | |")
            continue
        ci = s.get("metric_sd_ci95")
        lines.append(f"| {name} | {_num(s['metric_sd'])} | {'—' if not ci else f'{ci[0]:.4f}–{ci[1]:.4f}'} | "
                     f"{_num(floor)} | {_pct(s['disagreement']) if metric == 'accuracy' else _num(s['disagreement'])} | "
                     f"{_num(s['max_abs_diff'])} | {_pct(s['identical_share'])} | {_num(s['first_parting_epoch'])} |")
    rep = result["determinism"]["repeats_on"]
    lines += ["", "## Determinism", ""]
    if rep.get("varied"):
        lines.append(f"- Repeats with op determinism on: {_pct(rep['identical_share'])} bitwise identical "
                     f"(max abs prediction difference {_num(rep['max_abs_diff'])}).")
    else:
        lines.append("- No repeats with determinism on in this plan.")
    ratio = result["determinism"].get("fit_time_ratio_on_off")
    lines.append(f"- Fit time, determinism on ÷ off: {_num(ratio, 2)}.")
    lines += ["", "## Hardware profiles vs the reference", ""]
    if result["hardware"]:
        lines += ["| profile | runs compared | Δ metric (mean) | max |Δ| | disagreement | max abs diff | identical weights | drift ÷ seed noise |",
                  "|---|---|---|---|---|---|---|---|"]
        for prof, h in result["hardware"].items():
            if not h.get("compared"):
                lines.append(f"| {_md_escape(prof)} | 0 | {_md_escape(h.get('note', ''))} | | | | | |")
                continue
            lines.append(f"| {_md_escape(prof)} | {h['compared']} | {_num(h['metric_delta_mean'])} | "
                         f"{_num(h['metric_delta_max_abs'])} | {_num(h['disagreement'])} | {_num(h['max_abs_diff'])} | "
                         f"{_pct(h['identical_share'])} | {_num(h['drift_to_seed_noise'], 2)} |")
    else:
        lines.append("Only the reference profile ran: hardware not varied.")
    for skipped in exp.get("skipped_profiles", []):
        lines.append(f"- Skipped `{_md_escape(skipped['name'])}`: {_md_escape(skipped['reason'])}")
    if result["gate"]["checks"]:
        lines += ["", "## Tolerance gate", "", "| check | where | value | budget | status |", "|---|---|---|---|---|"]
        for c in result["gate"]["checks"]:
            lines.append(f"| {c['check']} | {_md_escape(c['where'])} | {_num(c['value'])} | {_num(c['budget'])} | {c['status']} |")
    tuning = result.get("tuning")
    if tuning and tuning.get("best_params") is not None:
        lines += ["", "## Tuning", "",
                  f"- Best value {_num(tuning.get('best_value'))} (trial {tuning.get('best_trial')}), "
                  f"{tuning.get('n_complete')} complete, {tuning.get('n_pruned')} pruned, {tuning.get('n_failed')} failed.",
                  f"- Best parameters: `{_md_escape(json.dumps(tuning.get('best_params'), sort_keys=True))}`",
                  f"- Top-{len(tuning.get('top_k_values') or [])} spread: {_num(tuning.get('top_k_spread'))}"]
    return "\n".join(lines) + "\n"


def _clean(value: Any) -> Any:
    # JSON has no NaN: write null, so every consumer can parse the report.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_all(result: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, str]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md"}
    _atomic_write(paths["json"], json.dumps(_clean(result), indent=2, sort_keys=True, default=str))
    _atomic_write(paths["markdown"], to_markdown(result))
    return {k: str(v) for k, v in paths.items()}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
