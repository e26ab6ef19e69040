"""The hardware and software fingerprint of the process a run executes in."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

from driftlab.profiles import PROFILE_ENV_KEYS, cpu_flags, supported_isas

# Node labels that name a GPU pool on the common clouds (read when on a cluster).
POOL_LABELS = ("cloud.google.com/gke-nodepool", "eks.amazonaws.com/nodegroup",
               "cloud.google.com/gke-accelerator", "nvidia.com/gpu.product",
               "node.kubernetes.io/instance-type", "kubernetes.azure.com/agentpool")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _nvidia_smi() -> list[dict[str, str]]:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, driver, mem = (part.strip() for part in line.split(",")[:3])
        gpus.append({"product": name, "driver": driver, "memory": mem})
    return gpus


def software() -> dict[str, Any]:
    """Versions of what computes; safe to call before or after TensorFlow is imported."""
    import numpy

    info: dict[str, Any] = {"python": platform.python_version(), "numpy": numpy.__version__}
    try:
        import tensorflow as tf
        import keras

        build = tf.sysconfig.get_build_info()
        info.update({
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "cuda": build.get("cuda_version"), "cudnn": build.get("cudnn_version"),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "gpus_visible": [d.name for d in tf.config.list_physical_devices("GPU")],
            "tf32": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
        })
    except ImportError:
        pass
    return info


def collect() -> dict[str, Any]:
    """Fingerprint of this process: CPU, GPU, versions, threads, the knobs applied, the node."""
    flags = cpu_flags()
    fp: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "node_name": os.environ.get("DRIFTLAB_NODE_NAME") or os.environ.get("NODE_NAME"),
        "node_pool": os.environ.get("DRIFTLAB_NODE_POOL"),
        "machine": platform.machine(),
        "os": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_isas": supported_isas(flags),
        "cpu_flags_simd": sorted(f for f in flags if f.startswith(("sse", "avx", "fma", "amx"))),
        "gpus": _nvidia_smi(),
        "env": {k: os.environ[k] for k in PROFILE_ENV_KEYS if k in os.environ},
    }
    fp.update(software())
    return fp
