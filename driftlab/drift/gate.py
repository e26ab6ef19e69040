"""The tolerance gate: drift against budgets from the config; PASS, FAIL or INCOMPLETE.

Budgets come from ``tolerances`` in the experiment file. A profile's own
entry in ``tolerances.per_profile`` overrides the global value of the same
budget; a budget that is not set is not checked. A check whose value cannot
be computed (for example drift / seed noise when seeds did not move the
metric) is reported as ``N/A`` and does not fail the gate.

A measurement that did not happen cannot pass. The gate is INCOMPLETE when
a source the plan varies has no comparison (its runs failed), a planned
profile has no run to compare with the reference, or the share of planned
runs that did not finish exceeds ``tolerances.max_failed_share`` (default 0).
FAIL wins over INCOMPLETE (a budget that was measured and exceeded is a
finding); only PASS exits 0 (see ``EXIT_CODES``).
"""

from __future__ import annotations

from typing import Any

PASS, FAIL, NA, INCOMPLETE = "PASS", "FAIL", "N/A", "INCOMPLETE"
#: Exit status of ``driftlab run`` and ``driftlab gate`` per gate outcome (2 is bad input, 1 a crash).
EXIT_CODES = {PASS: 0, FAIL: 3, INCOMPLETE: 4}

# (check name, budget field, value key in the profile's stats, comparison)
PROFILE_CHECKS = (
    ("metric_delta", "max_metric_delta", "metric_delta_max_abs", "<="),
    ("disagreement", "max_disagreement", "disagreement", "<="),
    ("drift_ratio", "max_drift_ratio", "drift_to_seed_noise", "<="),
    ("identical_share", "min_identical_share", "identical_share", ">="),
    ("prediction_diff", "max_prediction_diff", "max_abs_diff", "<="),
)


def _budget(tolerances: Any, profile: str | None, field: str) -> tuple[Any, str]:
    own = (getattr(tolerances, "per_profile", None) or {}).get(profile) if profile else None
    if own is not None and getattr(own, field, None) is not None:
        return getattr(own, field), "per_profile"
    return getattr(tolerances, field, None), "global"


def _check(name: str, where: str, value: float | None, budget: float, op: str, origin: str,
           note: str | None = None) -> dict[str, Any]:
    if value is None:
        status = NA
        note = note or "value not defined for this plan"
    else:
        status = PASS if (value <= budget if op == "<=" else value >= budget) else FAIL
    out = {"check": name, "where": where, "value": value, "budget": budget, "op": op, "budget_from": origin,
           "status": status}
    if note:
        out["note"] = note
    return out


def evaluate(tolerances: Any, result: dict[str, Any], *, task: str) -> dict[str, Any]:
    """Evaluate every configured budget against an analysis result.

    Args:
        tolerances: A ``GateConfig`` (the experiment's ``tolerances``).
        result: The dict from ``analyze`` (needs ``hardware`` and ``sources``).
        task: ``classification`` or ``regression`` (disagreement budgets are shares: classification only).

    Returns:
        ``{"status": PASS|FAIL, "checks": [...], "failed": [...]}``.
    """
    checks: list[dict[str, Any]] = []
    for prof, h in result.get("hardware", {}).items():
        budgets = []
        for name, field, key, op in PROFILE_CHECKS:
            if field == "max_disagreement" and task != "classification":
                continue
            budget, origin = _budget(tolerances, prof, field)
            if budget is not None:
                budgets.append((name, key, op, budget, origin))
        own = (getattr(tolerances, "per_profile", None) or {}).get(prof)
        by_metric = dict(getattr(tolerances, "max_delta_by_metric", None) or {})
        by_metric.update(getattr(own, "max_delta_by_metric", None) or {})
        if not h.get("compared"):
            checks.append({"check": "compared", "where": prof, "value": 0, "budget": 1, "op": ">=",
                           "budget_from": "plan", "status": INCOMPLETE,
                           "note": h.get("note", "no runs to compare with the reference")})
            continue
        for name, key, op, budget, origin in budgets:
            note = "seed noise is zero or unknown" if key == "drift_to_seed_noise" else None
            checks.append(_check(name, prof, h.get(key), budget, op, origin, note))
        for metric, budget in sorted(by_metric.items()):
            delta = (h.get("metric_deltas") or {}).get(metric)
            origin = "per_profile" if own is not None and metric in (own.max_delta_by_metric or {}) else "global"
            checks.append(_check(f"metric_delta:{metric}", prof, None if delta is None else delta["max_abs"],
                                 budget, "<=", origin, None if delta else f"no eval metric '{metric}' in the runs"))
    max_sd = getattr(tolerances, "max_metric_sd", None)
    if max_sd is not None:
        for name, s in result.get("sources", {}).items():
            if s.get("varied"):
                checks.append(_check("metric_sd", name, s.get("metric_sd"), max_sd, "<=", "global"))
    checks.extend(_completeness(tolerances, result))
    failed = [c for c in checks if c["status"] == FAIL]
    incomplete = [c for c in checks if c["status"] == INCOMPLETE]
    status = FAIL if failed else INCOMPLETE if incomplete else PASS
    return {"status": status, "checks": checks, "failed": len(failed), "incomplete": len(incomplete),
            "configured": any(c["budget_from"] != "plan" for c in checks)}


def _completeness(tolerances: Any, result: dict[str, Any]) -> list[dict[str, Any]]:
    """INCOMPLETE checks for what the plan asked for and the runs did not deliver."""
    plan = result.get("plan")
    if not plan:
        return []  # a report from before plans were recorded: nothing to hold it to
    checks = []
    for source in plan.get("sources_varied", []):
        s = (result.get("sources") or {}).get(source) or {}
        if not s.get("varied"):
            checks.append({"check": "measured", "where": source, "value": 0, "budget": 1, "op": ">=",
                           "budget_from": "plan", "status": INCOMPLETE,
                           "note": s.get("note") or "planned, but no comparison could be made"})
    planned = int(plan.get("runs") or 0)
    if planned:
        counts = result.get("counts") or {}
        finished = int(counts.get("ok", 0)) + int(counts.get("diverged", 0))
        share = max(0, planned - finished) / planned
        budget = getattr(tolerances, "max_failed_share", None)
        budget = 0.0 if budget is None else float(budget)
        checks.append({"check": "failed_share", "where": "campaign", "value": share, "budget": budget, "op": "<=",
                       "budget_from": "plan", "status": PASS if share <= budget else INCOMPLETE,
                       "note": f"{planned - finished} of {planned} planned runs did not finish"
                       if finished < planned else None})
        if checks[-1]["note"] is None:
            del checks[-1]["note"]
    return checks
