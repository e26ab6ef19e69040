from kfp import dsl

from driftlab.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def retrain_across_seeds(config_yaml: str, campaign: str, best_params: str, shard_index: int = 0,
                         shard_count: int = 1) -> dict:
    """Retrain the best configuration over the seed plan on the reference profile.

    Args:
        config_yaml: The experiment file's text.
        campaign: Campaign name; runs already recorded under it are skipped.
        best_params: Tuned hyperparameters from select_best (JSON text, typed).
        shard_index: Which shard of the seed plan this task trains (0-based); a
            ParallelFor over ``range(shard_count)`` spreads the plan over pods.
        shard_count: How many shards the plan is split into (1: the whole plan).

    Returns:
        Counts: profile, planned, skipped (already recorded), trained, failed, seconds, workers.
    """
    from driftlab import stages

    return stages.retrain_seeds(config_yaml, campaign, best_params, quiet=True,
                                shard_index=shard_index, shard_count=shard_count)
