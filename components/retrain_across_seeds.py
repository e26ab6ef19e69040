from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def retrain_across_seeds(config_yaml: str, campaign: str, best_params: dict) -> dict:
    """Retrain the best configuration over the seed plan on the reference profile.

    Args:
        config_yaml: The experiment file's text.
        campaign: Campaign name; runs already recorded under it are skipped.
        best_params: Tuned hyperparameters from select_best.

    Returns:
        Counts: planned, skipped (already recorded), trained, failed, seconds.
    """
    from driftlab import stages

    return stages.retrain_seeds(config_yaml, campaign, best_params, quiet=True)
