"""The tolerance gate: drift against budgets from the config, PASS/FAIL per check and overall.

Budgets come from ``tolerances`` in the experiment file. A profile's own
entry in ``tolerances.per_profile`` overrides the global value of the same
budget; a budget that is not set is not checked. A check whose value cannot
be computed (for example drift / seed noise when seeds did not move the
metric) is reported as ``N/A`` and does not fail the gate; a profile with
budgets but no runs to compare fails it.
"""

from __future__ import annotations

from typing import Any

PASS, FAIL, NA = "PASS", "FAIL", "N/A"

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
            if budgets or by_metric:
                checks.append({"check": "compared", "where": prof, "value": 0, "budget": 1, "op": ">=",
                               "budget_from": "global", "status": FAIL,
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
    failed = [c for c in checks if c["status"] == FAIL]
    return {"status": FAIL if failed else PASS, "checks": checks, "failed": len(failed),
            "configured": bool(checks)}
