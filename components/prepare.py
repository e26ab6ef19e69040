from kfp import dsl

from driftlab.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def prepare(config_yaml: str, campaign: str) -> list:
    """Validate the experiment, create the Optuna study once, and list the tune workers.

    Args:
        config_yaml: The experiment file's text.
        campaign: Name of this measurement campaign; a re-run with the same name resumes.

    Returns:
        Tune worker indices, one ParallelFor iteration each: ``[0]`` without a search space
        or with an existing study (that worker returns at once), never empty.
    """
    from driftlab import stages

    plan = stages.prepare(config_yaml, campaign)
    print(f"[driftlab] plan: {plan['planned_runs']} runs; reference {plan['reference']}; "
          f"other profiles: {', '.join(plan['profiles']) or 'none'}; study {plan['study']}", flush=True)
    for skipped in plan["skipped_profiles"]:
        print(f"[driftlab] skipped profile {skipped['name']}: {skipped['reason']}", flush=True)
    return plan["workers"]
