from kfp import dsl

from driftlab.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def tune(config_yaml: str, campaign: str, worker_index: int) -> int:
    """One tuning worker on the shared Optuna study; stops at the global trial budget.

    Args:
        config_yaml: The experiment file's text.
        campaign: Campaign name (selects the study).
        worker_index: This worker's index; seeds its sampler.

    Returns:
        The number of trials this worker ran.
    """
    from driftlab import stages

    ran = stages.tune(config_yaml, campaign, worker_index)
    print(f"[driftlab] tune worker {worker_index}: {ran} trial(s)", flush=True)
    return ran
