"""The Tuning section's content, shared by the Markdown and HTML reports (each escapes it its own way).

The summary comes from ``stages.select_best`` through KFP, so it is read
defensively: counts and trial numbers print as integers even when they
arrived as floats (a KFP dict turns every int into a float), missing fields
are left out rather than printed as None.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from driftlab.report.fmt import DASH

NO_TUNING = "No tuning in this experiment: the fixed hyperparameters in model.hyperparameters were retrained."
COMMAND_ORDER = ("optuna-dashboard", "optuna studies", "optuna trials")
MASKED_NOTE = "the password is shown as ***: put yours back in its place"


@dataclass
class TuningView:
    """Plain (unescaped) text and rows of the Tuning section."""

    tuned: bool
    sentence: str
    source: str = ""
    params: list[tuple[str, str]] = field(default_factory=list)
    top_title: str = ""
    top: list[tuple[str, str, str, str]] = field(default_factory=list)  # rank, trial, value, parameters
    commands: list[str] = field(default_factory=list)
    commands_note: str = ""


def as_int(value: Any) -> int | None:
    """An integer from an int, a whole float (27.0) or its text; else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number == int(number) else None


def sig(value: Any, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits; a dash for None, NaN or text."""
    if isinstance(value, bool) or value is None:
        return DASH
    try:
        number = float(value)
    except (TypeError, ValueError):
        return DASH
    if not math.isfinite(number):
        return DASH
    text = f"{number:#.{digits}g}"  # '#': 0.8760, not 0.876; trailing zeros are significant digits
    mantissa, e, exponent = text.partition("e")
    return mantissa.rstrip(".") + e + exponent


def param_value(value: Any) -> str:
    """A parameter value exactly (floats in full, so that it can be copied), text as it is."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def params_text(params: Any) -> str:
    if not isinstance(params, dict) or not params:
        return DASH
    return ", ".join(f"{k}={param_value(v)}" for k, v in sorted(params.items(), key=lambda kv: str(kv[0])))


def is_tuned(tuning: dict[str, Any]) -> bool:
    kind = (tuning.get("source") or {}).get("kind") if isinstance(tuning.get("source"), dict) else None
    if kind in ("driftlab", "existing-study"):
        return True
    if kind == "none":
        return False
    return tuning.get("best_trial") is not None or tuning.get("best_value") is not None


def _sentence(tuning: dict[str, Any]) -> str:
    trial = as_int(tuning.get("best_trial"))
    direction = tuning.get("direction")
    text = f"Best value {sig(tuning.get('best_value'))}"
    if direction in ("maximize", "minimize"):
        text += f" ({direction})"
    if trial is not None:
        text += f" at trial {trial}"
    counts = [(as_int(tuning.get(key)), word) for key, word in
              (("n_complete", "complete"), ("n_pruned", "pruned"), ("n_failed", "failed"),
               ("n_unfinished", "unfinished"))]
    shown = [f"{n} {word}" for n, word in counts if n is not None and (n or word != "unfinished")]
    if shown:
        text += "; trials: " + ", ".join(shown)
    return text + "."


def _source(tuning: dict[str, Any]) -> str:
    source = tuning.get("source") if isinstance(tuning.get("source"), dict) else {}
    trial = as_int(source.get("trial", tuning.get("best_trial")))
    at = f", trial {trial}" if trial is not None else ""
    study = source.get("study") or tuning.get("study")
    if source.get("kind") == "existing-study":
        where = f" in {source['storage']}" if source.get("storage") else ""
        return (f"Parameters from the existing Optuna study '{study}'{at}{where}; "
                "driftlab did not tune, it retrained that trial's parameters.")
    if source.get("kind") == "driftlab":
        return f"Parameters from driftlab's own study '{study}'{at}."
    return f"Parameters from study '{study}'{at}." if study else ""


def _top(tuning: dict[str, Any]) -> tuple[str, list[tuple[str, str, str, str]]]:
    values = tuning.get("top_k_values") or []
    params = tuning.get("top_k_params") or []
    trials = tuning.get("top_k_trials") or []
    if not isinstance(values, list) or not values:
        return "", []
    rows = []
    for i, value in enumerate(values):
        trial = as_int(trials[i]) if isinstance(trials, list) and i < len(trials) else None
        p = params[i] if isinstance(params, list) and i < len(params) else None
        rows.append((str(i + 1), DASH if trial is None else str(trial), sig(value), params_text(p)))
    left_out = as_int(tuning.get("top_k_left_out")) or 0  # rows cut so the summary fits a task parameter
    title = f"Top {len(rows)} of {len(rows) + left_out} trials" if left_out > 0 else f"Top {len(rows)} trials"
    stab = tuning.get("stability") if isinstance(tuning.get("stability"), dict) else {}
    spread, relative = stab.get("spread", tuning.get("top_k_spread")), stab.get("relative_spread")
    if len(rows) > 1 and spread is not None:
        title += f" (values span {sig(spread)}"
        rel = sig(100 * relative if isinstance(relative, (int, float)) else None, 2)
        title += f", {rel}% of the best)" if rel != DASH else ")"
    return title, rows


def tuning_view(tuning: dict[str, Any] | None) -> TuningView | None:
    """What the Tuning section shows; None when the report carries no tuning summary at all."""
    if not isinstance(tuning, dict):
        return None
    if not is_tuned(tuning):
        return TuningView(tuned=False, sentence=NO_TUNING)
    best = tuning.get("best_params") if isinstance(tuning.get("best_params"), dict) else {}
    title, top = _top(tuning)
    open_with = tuning.get("open_with") if isinstance(tuning.get("open_with"), dict) else {}
    order = {key: i for i, key in enumerate(COMMAND_ORDER)}  # the summary may arrive with its keys sorted
    commands = [str(open_with[k]) for k in sorted(open_with, key=lambda k: (order.get(k, len(order)), str(k)))
                if open_with[k]]
    return TuningView(tuned=True, sentence=_sentence(tuning), source=_source(tuning),
                      params=[(str(k), param_value(v)) for k, v in sorted(best.items(), key=lambda kv: str(kv[0]))],
                      top_title=title, top=top, commands=commands,
                      commands_note=MASKED_NOTE if any("***" in c for c in commands) else "")
