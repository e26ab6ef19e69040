from typing import NamedTuple

from kfp import dsl

from driftlab.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def select_best(config_yaml: str, campaign: str, trials_per_worker: list) -> NamedTuple(
        "Best", best_params=str, tuning=str):
    """Read the finished study: best parameters and the tuning-stability figures.

    Args:
        config_yaml: The experiment file's text.
        campaign: Campaign name (selects the study).
        trials_per_worker: Collected outputs of the tune workers (orders this task after them).

    Returns:
        best_params: The best trial's parameters as JSON text (a KFP dict would turn ints into
            floats), with the kind of each; fed to retraining.
        tuning: Study summary as JSON text: best value, trial counts, top-k spread, where the
            parameters came from.
    """
    from collections import namedtuple

    from driftlab import stages

    best_params, summary = stages.select_best_for_kfp(config_yaml, campaign, trials_per_worker)
    return namedtuple("Best", ["best_params", "tuning"])(best_params, summary)
