"""Container images the components run in on a cluster (pinned; built from docker/).

The registry is a compile-time choice (``driftlab compile|submit|schedule --image-registry``,
or ``DRIFTLAB_IMAGE_REGISTRY``): ``build_pipeline(registry=...)`` sets every task's image.
The names here are the defaults the components are declared with.
"""

DEFAULT_REGISTRY = "ghcr.io/driftlab"
VERSION = "0.1.0"  # the package version: images are tagged with it


def image_names(registry: str = DEFAULT_REGISTRY) -> tuple[str, str]:
    """``(cpu_image, gpu_image)`` in ``registry``, e.g. ``ghcr.io/driftlab/driftlab-cpu:0.1.0``."""
    registry = registry.rstrip("/")
    return f"{registry}/driftlab-cpu:{VERSION}", f"{registry}/driftlab-gpu:{VERSION}"


CPU_IMAGE, GPU_IMAGE = image_names()
