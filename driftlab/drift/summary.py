"""Plain words at the top of every report, and the headline numbers for KFP Metrics."""

from __future__ import annotations

import math
from typing import Any

from driftlab.drift import stats
from driftlab.drift.sources import LABELS

GROUP_LABELS = {**LABELS, "interactions": "interactions between sources", "residual": "residual"}


def _fmt(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _share_line(result: dict[str, Any]) -> str | None:
    """The largest share with its 95% interval; a share without an interval is never stated."""
    var = result.get("variance") or {}
    cis = var.get("shares_ci95") or {}
    shares = {k: v for k, v in (var.get("shares") or {}).items() if v is not None and k in cis}
    notes = var.get("share_notes") or {}
    how = "factorial random-effects ANOVA" if var.get("design") == "factorial" else "sources varied one at a time"
    skipped = (f"{', '.join(GROUP_LABELS.get(k, k) for k in notes)}: no share, too few levels "
               f"(a share needs at least 3)") if notes else ""
    if not shares:
        return f"Shares of the variance in {result['metric']['name']}: {skipped}." if skipped else None
    metric = result["metric"]["name"]

    def ci(k: str) -> str:
        return f"95% CI {cis[k][0]:.0%}–{cis[k][1]:.0%}"

    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    top, top_share = ranked[0]
    rest = "; ".join(f"{GROUP_LABELS.get(k, k)} {v:.0%} ({ci(k)})" for k, v in ranked[1:4] if v >= 0.005)
    verb = "explain" if top == "interactions" else "explains"
    line = (f"{GROUP_LABELS.get(top, top).capitalize()} {verb} {top_share:.0%} ({ci(top)}) of the variance in "
            f"{metric}")
    tail = "; ".join(x for x in (rest, skipped, how) if x)
    return line + f" ({tail})."


def _source_line(result: dict[str, Any]) -> str | None:
    """The largest source with its level-aware interval; the claim about the noise floor follows the interval."""
    metric = result["metric"]["name"]
    sds = {s: v for s, v in result["sources"].items() if v.get("varied") and v.get("metric_sd") is not None}
    if not sds:
        planned = (result.get("plan") or {}).get("sources_varied") or []
        if planned:
            return (f"No planned comparison could be made: too few runs of {', '.join(planned)} finished "
                    "(see the failures above).")
        return "No source of variation was varied in this plan: nothing to compare."
    top = max(sds, key=lambda s: sds[s]["metric_sd"])
    s = sds[top]
    ci = s.get("metric_sd_ci95")
    levels = s.get("levels")
    line = (f"{LABELS[top].capitalize()} moves {metric} most: SD {_fmt(s['metric_sd'])}"
            + (f" (95% CI {ci[0]:.4f}–{ci[1]:.4f}, {levels} levels)" if ci else ""))
    floor = s.get("noise_floor")
    if floor is not None:
        line += f"; the test-set noise floor is {_fmt(floor)}"
        if ci and ci[1] < floor:
            line += ", so this spread is within test-set noise"
        elif ci and ci[0] > floor:
            line += ", so this spread is above the noise floor"
        else:
            need = stats.levels_to_tell(s["metric_sd"], floor)
            more = (f"about {need} would tell if the SD stays at {_fmt(s['metric_sd'])}" if need
                    else f"more than {stats.MAX_ADVICE_LEVELS} would be needed")
            unit = {"hardware": "profiles", "nondeterminism": "repeats"}.get(top, "seeds")
            line += f": cannot tell with {levels} {unit} whether it is above it ({more})"
    return line + "."


def _profile_line(prof: str, h: dict[str, Any], reference: str, task: str) -> str:
    if not h.get("compared"):
        return f"{prof}: {h.get('note', 'no runs to compare')}."
    if h.get("identical_share") == 1.0:
        return f"{prof} is bitwise identical to {reference} ({h['compared']} runs compared)."
    ratio = h.get("drift_to_seed_noise")
    if h.get("disagreement") == 0 and not h.get("metric_delta_max_abs"):
        return (f"{prof} changes the weights' last bits ({h['identical_share']:.0%} bitwise-identical runs, max "
                f"prediction difference {h['max_abs_diff']:.2g}) but changes no eval prediction and no metric"
                f" vs {reference}: drift 0× seed noise.")
    dis = (f"{h['disagreement']:.1%} of eval predictions disagree" if task == "classification"
           else f"RMS prediction difference {h['disagreement']:.4g}")
    drift = f"drifts {ratio:.2f}× seed noise" if ratio is not None else "drift not comparable (seed noise unknown)"
    return f"{prof} {drift} vs {reference}: {dis}, {h['identical_share']:.0%} bitwise-identical weights."


def _determinism_line(result: dict[str, Any]) -> str | None:
    det = result["determinism"]
    ratio = det.get("fit_time_ratio_on_off")
    cost = f" at {ratio:.2f}× fit time" if ratio is not None else ""
    ref = result["reference"]
    verdict = det.get("verdict")
    if verdict == "removes":
        return f"Op determinism removes all run-to-run variance on {ref}{cost}."
    if verdict == "nothing_to_remove":
        return (f"Repeats on {ref} were bitwise identical even without op determinism: "
                f"it removed nothing here" + (f" (fit time {ratio:.2f}× with it on)." if ratio is not None else "."))
    if verdict == "partial":
        on = det["repeats_on"]
        return (f"With op determinism on, only {on['identical_share']:.0%} of repeats on {ref} are bitwise "
                f"identical{cost}: some kernels stay nondeterministic.")
    on = det["repeats_on"]
    if on.get("varied"):
        return f"With op determinism on, {on['identical_share']:.0%} of repeats on {ref} are bitwise identical."
    return None


def _failure_line(result: dict[str, Any]) -> str | None:
    """How many planned runs did not finish, by distinct error: the report's first line when any failed."""
    counts = result["counts"]
    planned = counts.get("planned") or counts["runs"]
    failed = int(counts.get("failed", 0))
    missing = max(0, int(planned) - int(counts["runs"]))
    if not failed and not missing:
        return None
    line = f"{failed} of {planned} {'planned ' if counts.get('planned') else ''}runs failed"
    groups = result.get("failures") or []
    if groups:
        line += ": " + "; ".join(f"{g['count']}× {g['error']}" for g in groups[:3])
        if len(groups) > 3:
            line += f"; and {len(groups) - 3} other error(s)"
    if missing:
        line += f"; {missing} planned run(s) were never recorded"
    return line + ". Failed runs are left out of every statistic."


def _gate_line(gate: dict[str, Any]) -> str:
    checks = gate.get("checks") or []
    incomplete = [c for c in checks if c["status"] == "INCOMPLETE"]
    failed = [c for c in checks if c["status"] == "FAIL"]
    if incomplete and not failed:
        what = ", ".join(f"{c['check']} on {c['where']}" for c in incomplete[:4])
        return (f"Tolerance gate: INCOMPLETE — a planned measurement did not happen ({what}); "
                "nothing is claimed for what was not measured.")
    budgets = [c for c in checks if c.get("budget_from") != "plan"]
    if not failed and not budgets:
        return "Tolerance gate: PASS (no budgets configured in tolerances; every planned measurement was made)."
    if not failed:
        return f"Tolerance gate: PASS ({len(budgets)} checks within budget)."
    first = failed[0]
    value = first["value"] if isinstance(first["value"], int) else _fmt(first["value"])
    return (f"Tolerance gate: FAIL ({len(failed)} of {len(gate['checks'])} checks), e.g. {first['check']} on "
            f"{first['where']}: {value} against budget {first['op']} {first['budget']}.")


def summarize(result: dict[str, Any]) -> list[str]:
    """A handful of sentences a person reads before any table."""
    lines: list[str] = []
    failure = _failure_line(result)
    if failure:
        lines.append(failure)
    if not result["counts"].get("reference_runs"):
        lines.append(f"No finished runs on the reference profile {result['reference']}: nothing to compare.")
    for line in (_share_line(result), _source_line(result)):
        if line:
            lines.append(line)
    for prof, h in result["hardware"].items():
        lines.append(_profile_line(prof, h, result["reference"], result["task"]))
    det = _determinism_line(result)
    if det:
        lines.append(det)
    from driftlab.drift.summary_examples import example_lines

    lines += example_lines(result)
    diverged = result["counts"]["diverged"]
    if diverged:
        lines.append(f"{diverged} of {result['counts']['runs']} runs diverged (loss became NaN or inf) "
                     "and are left out of every statistic.")
    lines.append(_gate_line(result["gate"]))
    return lines


def headline_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Finite numbers for the KFP run comparison view (names are stable: see docs/report-schema.md)."""
    out: dict[str, float | None] = {}
    name = result["metric"]["name"]
    out[f"{name}_mean"] = result["metric"].get("mean")
    out["noise_floor"] = result["metric"].get("noise_floor")
    for source, s in result["sources"].items():
        if s.get("varied"):
            out[f"{source}_sd"] = s.get("metric_sd")
            out[f"{source}_disagreement"] = s.get("disagreement")
    for group, share in ((result.get("variance") or {}).get("shares") or {}).items():
        out[f"share_{group}"] = share
    for prof, h in result["hardware"].items():
        if h.get("compared"):
            out[f"{prof}_disagreement"] = h.get("disagreement")
            out[f"{prof}_drift_ratio"] = h.get("drift_to_seed_noise")
            out[f"{prof}_identical_share"] = h.get("identical_share")
    out["determinism_fit_time_ratio"] = result["determinism"].get("fit_time_ratio_on_off")
    out["gate_pass"] = 1.0 if result["gate"]["status"] == "PASS" else 0.0
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}
