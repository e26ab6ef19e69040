"""What a finished study hands to retraining: best config, trial table, stability."""

from __future__ import annotations

import statistics
from typing import Any

import optuna
from optuna.trial import TrialState

from driftlab.config import ExperimentConfig
from driftlab.tuning import budget as slots
from driftlab.tuning.storage import storage_for
from driftlab.tuning.study import TuningError, study_name, trial_row


def stability(values: list[float], *, maximize: bool) -> dict[str, Any]:
    """How much the winning score moves within the top-k trials.

    A small spread says the tuner's pick is one of several equally good
    configurations (its exact choice is itself noise); a large one says the
    best trial stands out. ``relative_spread`` divides by the best value's
    magnitude, so studies with different metrics compare.
    """
    ranked = sorted(values, reverse=maximize)
    if not ranked:
        return {"k": 0, "spread": 0.0, "relative_spread": 0.0, "sd": 0.0, "best_minus_second": 0.0}
    spread = max(ranked) - min(ranked)
    scale = abs(ranked[0]) or 1.0
    return {"k": len(ranked), "spread": spread, "relative_spread": spread / scale,
            "sd": statistics.stdev(ranked) if len(ranked) > 1 else 0.0,
            "best_minus_second": abs(ranked[0] - ranked[1]) if len(ranked) > 1 else 0.0}


def best(config: ExperimentConfig, campaign: str, top_k: int | None = None) -> dict[str, Any]:
    """Summarize the study: the best trial, counts, top-k stability and the trial table.

    Args:
        config: The experiment.
        campaign: Campaign name (selects the study).
        top_k: How many best trials the stability figures use; default ``tuning.top_k``.

    Returns:
        ``best_params`` (fed to retraining), ``best_value``, ``best_trial``,
        counts by state, ``budget``, ``top_k_values``, ``top_k_params``,
        ``top_k_spread``, ``stability`` and ``trials`` (the table).
    """
    name = study_name(config, campaign)
    try:
        study = optuna.load_study(study_name=name, storage=storage_for(config))
    except KeyError:
        raise TuningError(f"study '{name}' does not exist; run the tune stage first") from None
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    if not finished:
        errors = sorted({t.user_attrs.get(slots.ERROR_ATTR) for t in trials if t.user_attrs.get(slots.ERROR_ATTR)})
        hint = f"; errors: {'; '.join(errors[:3])}" if errors else "; see the tune logs"
        raise TuningError(f"study '{name}' has no completed trial{hint}")
    maximize = config.direction == "maximize"
    ranked = sorted(finished, key=lambda t: (t.value, -t.number) if maximize else (-t.value, -t.number),
                    reverse=True)
    top = ranked[:top_k or config.tuning.top_k]
    counted = slots.counts(study)
    return {
        "study": study.study_name,
        "direction": config.direction,
        "budget": study.user_attrs.get("budget", slots.effective_budget(config)),
        "best_params": ranked[0].params,
        "best_value": ranked[0].value,
        "best_trial": ranked[0].number,
        "n_complete": counted.complete,
        "n_pruned": counted.pruned,
        "n_failed": counted.failed,
        "n_unfinished": counted.running + counted.waiting,
        "top_k_values": [t.value for t in top],
        "top_k_params": [t.params for t in top],
        "top_k_spread": stability([t.value for t in top], maximize=maximize)["spread"],
        "stability": stability([t.value for t in top], maximize=maximize),
        "trials": [trial_row(t) for t in trials],
    }
