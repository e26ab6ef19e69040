"""Summary sentences for the per-example figures (churn, Jordan's check) and the determinism switch."""

from __future__ import annotations

from typing import Any

from driftlab.drift.churn import jordan_sentence
from driftlab.drift.sources import LABELS


def jordan_line(result: dict[str, Any]) -> str | None:
    """Jordan's check over the seed sources pooled (else the first source that has it)."""
    j = result.get("jordan") or {}
    for key in ("seed", "init", "shuffle", "split", "nondeterminism", "hardware"):
        if isinstance(j.get(key), dict) and "verdict" in j[key]:
            where = "Seeds (init, shuffle, split pooled)" if key == "seed" else LABELS[key].capitalize()
            return "Jordan's check — " + jordan_sentence(j[key], where)
    return None


def churn_line(result: dict[str, Any]) -> str | None:
    """The source whose runs change the most eval rows."""
    c = result.get("churn") or {}
    if not c:
        return None
    if result.get("task") == "classification":
        top = max(c, key=lambda s: c[s]["flip_share"])
        s = c[top]
        return (f"Churn: {s['flip_share']:.1%} of eval rows flip their predicted class at least once across "
                f"{LABELS[top]} runs, the most of any source (mean per-row flip rate {s['flip_rate_mean']:.1%}).")
    top = max(c, key=lambda s: c[s]["row_sd_rms"])
    s = c[top]
    return (f"Per-row prediction SD (regression has no flips): {LABELS[top]} moves a prediction by "
            f"{s['row_sd_rms']:.4g} RMS across runs (largest row {s['row_sd_max']:.4g}, target units).")


def switch_line(result: dict[str, Any]) -> str | None:
    """Determinism on vs off at the same seeds, as its own comparison."""
    sw = (result.get("determinism") or {}).get("switch") or {}
    if not sw.get("compared"):
        return None
    metric, ref, n = result["metric"]["name"], result["reference"], sw["compared"]
    changed = n - sw["identical"]
    ratio = sw.get("fit_time_ratio_on_off")
    cost = f"; fit time {ratio:.2f}× with it on" if ratio is not None else ""
    if not changed:
        return f"Switching op determinism off on {ref} changed nothing: all {n} runs with the same seeds are " \
               f"bitwise identical{cost}."
    if not sw.get("metric_delta_max_abs"):
        moved = f"{metric} unchanged"
    else:
        moved = f"{metric} moved by {sw['metric_delta_mean']:+.4f} on average (max |Δ| {sw['metric_delta_max_abs']:.4f})"
    dis = (f"{sw['disagreement']:.1%} of eval predictions changed" if result.get("task") == "classification"
           else f"RMS prediction difference {sw['disagreement']:.4g}")
    return (f"Switching op determinism off on {ref} changed the weights in {changed} of {n} runs with the same "
            f"seeds ({sw['identical']} of {n} identical), with {moved}; {dis}{cost}.")


def example_lines(result: dict[str, Any]) -> list[str]:
    return [line for line in (switch_line(result), churn_line(result), jordan_line(result)) if line]
