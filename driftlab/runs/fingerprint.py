"""The hardware and software fingerprint of the process a run executes in.

What it records: CPU model and SIMD flags, the oneDNN ISAs available, GPU
product / driver / CUDA / compute capability (from ``nvidia-smi``) and the
CUDA / cuDNN TensorFlow was built with, TensorFlow / Keras / NumPy / Python
versions, thread counts, oneDNN and TF32 settings, the profile's env knobs,
and where it ran. On a cluster the pipeline exposes through the Kubernetes
downward API (pipelines/pod.py):

- ``DRIFTLAB_NODE_NAME`` ← ``spec.nodeName`` (training tasks)
- ``DRIFTLAB_POD_NAME`` ← ``metadata.name``, ``DRIFTLAB_POD_NAMESPACE`` ← ``metadata.namespace`` (training tasks)
- ``DRIFTLAB_WHERE`` ← the ``driftlab/where`` Pod annotation (``cluster``).

``DRIFTLAB_NODE_POOL`` is recorded when a Pod spec sets it (the pipeline does not).

The downward API cannot read node labels, so without ``DRIFTLAB_NODE_POOL``
the pool is taken from the profile's node selector (``DRIFTLAB_NODE_SELECTOR``,
set by the executor), which is what placed the pod on that pool.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from driftlab.config.profiles import PROFILE_ENV_KEYS, cpu_flags, supported_isas
from driftlab import settings

# Node labels that name a pool on the common clouds, most specific first.
POOL_LABELS = ("cloud.google.com/gke-nodepool", "eks.amazonaws.com/nodegroup",
               "kubernetes.azure.com/agentpool", "karpenter.sh/nodepool",
               "cloud.google.com/gke-accelerator", "nvidia.com/gpu.product",
               "node.kubernetes.io/instance-type")

NVIDIA_SMI_FIELDS = ("name", "driver_version", "memory.total", "compute_cap", "uuid")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def parse_nvidia_smi(query_csv: str, banner: str = "") -> list[dict[str, str | None]]:
    """GPUs from ``nvidia-smi --query-gpu=<NVIDIA_SMI_FIELDS> --format=csv,noheader``.

    Args:
        query_csv: The CSV output, one GPU a line.
        banner: The plain ``nvidia-smi`` output, for the driver's CUDA version.

    Returns:
        One dict per GPU: product, driver, memory, compute_capability, uuid, cuda_driver.
    """
    cuda = re.search(r"CUDA Version:\s*([0-9.]+)", banner)
    gpus: list[dict[str, str | None]] = []
    for line in query_csv.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        parts += [""] * (len(NVIDIA_SMI_FIELDS) - len(parts))
        value = {name: (v if v and not v.startswith("[") else None) for name, v in zip(NVIDIA_SMI_FIELDS, parts)}
        gpus.append({"product": value["name"], "driver": value["driver_version"], "memory": value["memory.total"],
                     "compute_capability": value["compute_cap"], "uuid": value["uuid"],
                     "cuda_driver": cuda.group(1) if cuda else None})
    return gpus


def _run(args: list[str]) -> str | None:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _nvidia_smi() -> list[dict[str, str | None]]:
    query = _run(["nvidia-smi", f"--query-gpu={','.join(NVIDIA_SMI_FIELDS)}", "--format=csv,noheader"])
    if query is None:  # older drivers lack compute_cap: ask for the basics only
        query = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    if not query:
        return []
    return parse_nvidia_smi(query, _run(["nvidia-smi"]) or "")


def software() -> dict[str, Any]:
    """Versions of what computes.

    TensorFlow's part is filled only once TensorFlow is imported (a worker
    imports it first, with its profile's knobs): importing it here would fix
    the knobs of the calling process behind its back.
    """
    import numpy

    info: dict[str, Any] = {"python": platform.python_version(), "numpy": numpy.__version__}
    if "tensorflow" not in sys.modules:
        return info
    try:
        import keras
        import tensorflow as tf

        build = tf.sysconfig.get_build_info()
        gpus = tf.config.list_physical_devices("GPU")
        details = []
        for gpu in gpus:
            try:
                d = tf.config.experimental.get_device_details(gpu)
            except (ValueError, RuntimeError):
                d = {}
            cc = d.get("compute_capability")
            details.append({"name": gpu.name, "device_name": d.get("device_name"),
                            "compute_capability": ".".join(map(str, cc)) if cc else None})
        info.update({
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "cuda": build.get("cuda_version"), "cudnn": build.get("cudnn_version"),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "gpus_visible": [g["name"] for g in details],
            "gpu_devices": details,
            "tf32": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
            "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        })
    except ImportError:
        pass
    return info


def node_pool(environ: dict[str, str] | None = None) -> str | None:
    """The pool this process runs on: DRIFTLAB_NODE_POOL, else a pool label of the profile's node selector."""
    env = os.environ if environ is None else environ
    if env.get(settings.NODE_POOL.name):
        return env[settings.NODE_POOL.name]
    try:
        selector = json.loads(env.get(settings.NODE_SELECTOR.name) or "{}")
    except ValueError:
        selector = {}
    return next((str(selector[label]) for label in POOL_LABELS if label in selector), None)


def placement(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Where this process runs: node, pod and pool on a cluster (None locally), and the profile."""
    env = os.environ if environ is None else environ
    return {
        "where": env.get(settings.WHERE.name, 'local'),
        "node_name": env.get(settings.NODE_NAME.name) or env.get("NODE_NAME"),
        "node_pool": node_pool(env),
        "pod_name": env.get(settings.POD_NAME.name),
        "pod_namespace": env.get(settings.POD_NAMESPACE.name),
        "in_kubernetes": "KUBERNETES_SERVICE_HOST" in env,
        "profile": env.get(settings.PROFILE.name),
    }


def collect() -> dict[str, Any]:
    """Fingerprint of this process: CPU, GPU, versions, threads, the knobs applied, the node."""
    flags = cpu_flags()
    fp: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_isas": supported_isas(flags),
        "cpu_flags_simd": sorted(f for f in flags if f.startswith(("sse", "avx", "fma", "amx"))),
        "gpus": _nvidia_smi(),
        "env": {k: os.environ[k] for k in PROFILE_ENV_KEYS if k in os.environ},
    }
    fp.update(placement())
    fp.update(software())
    return fp
