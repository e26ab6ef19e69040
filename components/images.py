"""Container images the components run in on a cluster (pinned; built from docker/)."""

CPU_IMAGE = "ghcr.io/driftlab/driftlab-cpu:0.1.0"
GPU_IMAGE = "ghcr.io/driftlab/driftlab-gpu:0.1.0"
