"""A campaign belongs to one experiment plan.

Every run recorded under a campaign carries the plan hash of the experiment
file that planned it (``driftlab.config.plan_hash``: the whole file except
``description`` and ``tolerances``). Running a campaign again with the same
plan resumes it; running it with a changed plan is refused before anything
is written, with what changed and the two ways on: a new campaign name, or
``--replace`` to discard the old runs, reports and study of that campaign.
Aggregation reads only the current plan's runs, so no report ever holds runs
of two plans.
"""

from __future__ import annotations

from typing import Any

from driftlab.errors import BadInput
from driftlab.config import ExperimentConfig, plan_changes, plan_hash


class CampaignConflict(BadInput):
    """A campaign that holds runs of another plan than the experiment file now asks for."""


def conflicting_runs(store: Any, config: ExperimentConfig, campaign: str) -> int:
    """How many runs under ``campaign`` were planned by another plan than ``config``'s."""
    current = plan_hash(config)
    return sum(n for h, n in store.campaign_plans(config.name, campaign).items() if h != current)


def _changes(store: Any, config: ExperimentConfig, campaign: str) -> list[str]:
    current = plan_hash(config)
    new = config.model_dump(mode="json")
    for old in store.campaign_configs(config.name, campaign):
        if plan_hash(old) != current:
            return plan_changes(old, new)
    return []


def check_campaign(store: Any, config: ExperimentConfig, campaign: str) -> None:
    """Refuse a campaign that holds runs of another plan (``CampaignConflict`` says what changed).

    Raises:
        CampaignConflict: naming the changed fields and the fix (a new campaign, or ``--replace``).
    """
    other = conflicting_runs(store, config, campaign)
    if not other:
        return
    changes = _changes(store, config, campaign)
    what = ("the experiment file changed since:\n" + "\n".join(f"    {line}" for line in changes)) if changes \
        else "they were planned by another version of the experiment file"
    raise CampaignConflict(
        f"campaign '{campaign}' of experiment '{config.name}' holds {other} run(s) of another plan; {what}\n"
        f"  A campaign measures one plan. Use --campaign NEW-NAME to measure the changed file apart, or "
        f"--replace to discard campaign '{campaign}' (its {other} old run(s), reports and study) and measure "
        "it again.")


def replace_campaign(store: Any, config: ExperimentConfig, campaign: str) -> int:
    """Discard a campaign's runs, reports and driftlab's Optuna study; returns the runs removed."""
    removed = store.delete_campaign(config.name, campaign)
    if config.search_space and not getattr(config.tuning, "study", None):
        import optuna

        from driftlab.tuning.storage import storage_for
        from driftlab.tuning.study import study_name

        try:
            optuna.delete_study(study_name=study_name(config, campaign), storage=storage_for(config))
        except KeyError:
            pass  # no study yet
    return removed
