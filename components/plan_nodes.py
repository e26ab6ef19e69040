from kfp import dsl

from driftlab.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def plan_nodes(config_yaml: str, best_params: str) -> list:
    """List the node tasks: one per profile (node pool) besides the reference.

    Each item carries what its task needs (profile name, tuned parameters,
    placement), so that a loop iteration depends on nothing outside its item.

    Args:
        config_yaml: The experiment file's text.
        best_params: Tuned hyperparameters from select_best (JSON text).

    Returns:
        Node tasks ``{profile, best_params, node_selector, tolerations}``; GPU pools are left out locally.
    """
    from driftlab import stages

    return stages.node_tasks(config_yaml, best_params)
