from kfp import dsl

from driftlab.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def check_gate(gate: str):
    """Fail the pipeline run unless the tolerance gate passed, so schedules and CI can act on it.

    Args:
        gate: PASS, FAIL or INCOMPLETE (a planned measurement did not happen) from aggregate_drift.
    """
    if gate != "PASS":
        print(f"[driftlab] tolerance gate: {gate} (see the report for the checks)", flush=True)
        raise SystemExit(f"driftlab tolerance gate: {gate} (see the report for the checks)")
