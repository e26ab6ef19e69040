"""A profile's placement on a cluster: what the pipeline's per-pool Pod settings read.

The pipeline resolves placement at run time, in a small step beside each
training task (``components/pool_placement.py``), because the experiment file
(and so the list of pools) is a run-time parameter. Every value is a string or
a JSON object/list, the types the KFP driver reads Pod settings from: it takes
resource placeholders as strings only (an integer count would resolve to "").
"""

from __future__ import annotations

from typing import Any

from driftlab.config import ExperimentConfig, ProfileConfig, load_config_text
from driftlab.config.profiles import CLUSTER, ResolvedProfiles, profiles_for

# The driver parses CPU and memory requests as quantities: never empty.
DEFAULT_CPU_REQUEST = "1"
DEFAULT_MEMORY_REQUEST = "2Gi"


def cluster_profiles(config: ExperimentConfig) -> ResolvedProfiles:
    """Profiles as a cluster resolves them, from any machine: ``profiles_for(config, "cluster")``."""
    return profiles_for(config, CLUSTER)


def placement(profile: ProfileConfig, *, cpu_image: str, gpu_image: str) -> dict[str, Any]:
    """Where a profile's task runs and in which image.

    Args:
        profile: A validated profile.
        cpu_image: Image for ``kind: cpu`` profiles.
        gpu_image: Image for ``kind: gpu`` profiles (TensorFlow with CUDA).

    Returns:
        ``node_selector`` (dict), ``tolerations`` (list), ``accelerator_type`` (empty: none),
        ``accelerator_count``, ``cpu_request``, ``memory_request`` and ``image`` (strings).
    """
    accelerator = profile.accelerator
    return {
        "node_selector": dict(profile.node_selector),
        "tolerations": [t.model_dump(mode="json", exclude_none=True) for t in profile.tolerations],
        "accelerator_type": accelerator.type if accelerator else "",
        "accelerator_count": str(accelerator.count if accelerator else 0),
        "cpu_request": profile.cpu_request or DEFAULT_CPU_REQUEST,
        "memory_request": profile.memory_request or DEFAULT_MEMORY_REQUEST,
        "image": gpu_image if profile.kind == "gpu" else cpu_image,
    }


def pool_placement(config_text: str, profile_name: str, *, cpu_image: str, gpu_image: str) -> dict[str, Any]:
    """Placement of one profile of an experiment; an empty name means the reference profile.

    Args:
        config_text: The experiment file's text.
        profile_name: A profile name, or ``""`` for the reference (tuning, retrain across seeds).
        cpu_image: Image for CPU profiles.
        gpu_image: Image for GPU profiles.

    Returns:
        The ``placement`` of that profile, plus its ``profile`` name.

    Raises:
        KeyError: The experiment has no profile of that name.
    """
    profiles = cluster_profiles(load_config_text(config_text, "experiment"))
    profile = profiles.by_name(profile_name) if profile_name else profiles.reference
    return {"profile": profile.name, **placement(profile, cpu_image=cpu_image, gpu_image=gpu_image)}
