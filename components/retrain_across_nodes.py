from kfp import dsl

from driftlab.components.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def retrain_across_nodes(config_yaml: str, campaign: str, node: dict) -> dict:
    """Retrain the deterministic seed runs on one profile (node pool), one shard of them.

    Args:
        config_yaml: The experiment file's text.
        campaign: Campaign name; runs already recorded under it are skipped.
        node: One item of plan_nodes: ``{profile, best_params, shard_index, shard_count, ...}``
            (an item without shard fields trains all of the profile's runs).

    Returns:
        Counts: profile, planned, skipped (already recorded), trained, failed, seconds, workers;
        ``skipped_profile`` with the reason when the pool cannot run here (a GPU pool locally).
    """
    from driftlab import stages

    return stages.retrain_node_item(config_yaml, campaign, node)
