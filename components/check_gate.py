from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def check_gate(gate: str):
    """Fail the pipeline run when the tolerance gate failed, so schedules and CI can act on it.

    Args:
        gate: PASS or FAIL from aggregate_drift.
    """
    if gate != "PASS":
        raise SystemExit(f"driftlab tolerance gate: {gate} (see the report for the failing checks)")
