# No "from __future__ import annotations": KFP reads the real annotation types.
from typing import NamedTuple

from kfp import dsl

from driftlab.components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def pool_placement(config_yaml: str, profile: str, cpu_image: str, gpu_image: str) -> NamedTuple(
        "Placement", node_selector=dict, tolerations=list, accelerator_type=str, accelerator_count=str,
        cpu_request=str, memory_request=str, image=str):
    """Resolve one profile's Pod placement, for the training task beside it.

    kfp 2.17 cannot put a loop item's *field* into a node selector, toleration or
    resource request (the compiler rejects it); a task output in the same loop
    iteration works, so this step turns the profile into outputs.

    Args:
        config_yaml: The experiment file's text.
        profile: Profile name; empty for the reference profile.
        cpu_image: Image for CPU profiles.
        gpu_image: Image for GPU profiles.

    Returns:
        node_selector: Node labels the task's Pod requires.
        tolerations: Tolerations for the pool's taints.
        accelerator_type: Extended resource, e.g. nvidia.com/gpu; empty for none.
        accelerator_count: How many accelerators (a string, as the driver reads it).
        cpu_request: CPU request.
        memory_request: Memory request.
        image: The image the training task runs in.
    """
    from collections import namedtuple

    from driftlab.cluster.pools import pool_placement as resolve

    where = resolve(config_yaml, profile, cpu_image=cpu_image, gpu_image=gpu_image)
    print(f"placement of {where['profile']}: nodes {where['node_selector'] or 'any'}, "
          f"accelerator {where['accelerator_type'] or 'none'}", flush=True)
    fields = ["node_selector", "tolerations", "accelerator_type", "accelerator_count", "cpu_request",
              "memory_request", "image"]
    return namedtuple("Placement", fields)(*(where[f] for f in fields))
