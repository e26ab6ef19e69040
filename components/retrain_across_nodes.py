from kfp import dsl

from components.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def retrain_across_nodes(config_yaml: str, campaign: str, node: dict) -> dict:
    """Retrain the deterministic seed runs on one profile (node pool).

    Args:
        config_yaml: The experiment file's text.
        campaign: Campaign name; runs already recorded under it are skipped.
        node: One item of plan_nodes: ``{profile, best_params, ...}``.

    Returns:
        Counts: planned, skipped (already recorded), trained, failed, seconds.
    """
    from driftlab import stages

    return stages.retrain_node(config_yaml, campaign, node["best_params"], node["profile"], quiet=True)
