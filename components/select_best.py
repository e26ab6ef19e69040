from typing import NamedTuple

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def select_best(config_yaml: str, campaign: str, trials_per_worker: list) -> NamedTuple(
        "Best", best_params=dict, tuning=dict):
    """Read the finished study: best parameters and the tuning-stability figures.

    Args:
        config_yaml: The experiment file's text.
        campaign: Campaign name (selects the study).
        trials_per_worker: Collected outputs of the tune workers (orders this task after them).

    Returns:
        best_params: The best trial's parameters (fed to retraining).
        tuning: Study summary: best value, trial counts, top-k spread.
    """
    from collections import namedtuple

    from driftlab import stages

    best = stages.select_best(config_yaml, campaign)
    summary = stages.kfp_safe({k: v for k, v in best.items() if k != "trials"})
    summary["trials_per_worker"] = trials_per_worker
    print(f"[driftlab] best {best.get('best_value')}: {best['best_params']}", flush=True)
    return namedtuple("Best", ["best_params", "tuning"])(best["best_params"], summary)
