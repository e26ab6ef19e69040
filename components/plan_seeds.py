from kfp import dsl

from driftlab.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def plan_seeds(config_yaml: str, best_params: str) -> list:
    """List the shards of the seed plan: one retrain-across-seeds pod each.

    Args:
        config_yaml: The experiment file's text.
        best_params: Tuned hyperparameters from select_best (JSON text); each item carries them.

    Returns:
        Shards ``{best_params, shard_index, shard_count, runs}`` (``seeds.shards``, else about
        ``DRIFTLAB_RUNS_PER_SHARD`` runs each on a cluster; one locally).
    """
    from driftlab import stages

    return stages.seed_tasks(config_yaml, best_params)
