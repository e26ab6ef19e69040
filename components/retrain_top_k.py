from kfp import dsl

from driftlab.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def retrain_top_k(config_yaml: str, campaign: str, tuning: str) -> dict:
    """Retrain the runner-up configurations (``tuning.retrain_top_k``) over the init × shuffle seeds.

    Args:
        config_yaml: The experiment file's text.
        campaign: Campaign name; runs already recorded under it are skipped.
        tuning: Study summary from select_best (JSON text; its top-k parameters are retrained).

    Returns:
        Counts: profile, planned, skipped (already recorded), trained, failed, seconds, workers;
        ``skipped_profile`` says why nothing ran (retrain_top_k is 1).
    """
    from driftlab import stages

    return stages.retrain_top_k(config_yaml, campaign, tuning, quiet=True)
