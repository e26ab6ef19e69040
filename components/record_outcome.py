# No "from __future__ import annotations": KFP reads the real annotation types.
from kfp import dsl

from driftlab.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def record_outcome(config_yaml: str, campaign: str, status: dsl.PipelineTaskFinalStatus):
    """Exit handler: record how the run ended (failed runs included) in the results store.

    Args:
        config_yaml: The experiment file's text.
        campaign: Campaign name.
        status: The final status of the pipeline's body, filled in by KFP.
    """
    from driftlab.cluster.exit_record import record_outcome as record

    error = status.error_message or ""
    outcome = record(config_yaml, campaign, {"state": status.state,
                                             "pipeline_job_resource_name": status.pipeline_job_resource_name})
    if outcome["recorded"]:
        print(f"[driftlab] run {outcome['run']} ended {outcome['status']} "
              f"(execution {outcome['execution_id']})" + (f": {error}" if error else ""), flush=True)
    else:
        print(f"run ended {outcome['status']}; not recorded here: {outcome['reason']}", flush=True)
