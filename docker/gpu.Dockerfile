# driftlab GPU image: the pipeline's training steps on GPU node pools.
#   docker build -f docker/gpu.Dockerfile -t ghcr.io/driftlab/driftlab-gpu:0.1.0 .
#
# Same base as the CPU image (same Python, same Debian userland), so a CPU-vs-GPU
# difference in a drift report is the hardware and its kernels, not the OS.
# GPU support comes from TensorFlow's own CUDA wheels: `tensorflow[and-cuda]` pulls the
# pinned CUDA 12 / cuDNN user-space libraries (nvidia-*-cu12) that this TensorFlow was
# built against, so no nvidia/cuda base image is needed; only the node's NVIDIA driver,
# which the NVIDIA container toolkit / GPU device plugin mounts into the container.
# The build context is filtered by ../.dockerignore.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

RUN groupadd --gid 10001 driftlab \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/driftlab \
      --shell /usr/sbin/nologin driftlab

WORKDIR /tmp/driftlab-build
# 1. The dependencies, before any source (a code edit does not reinstall TensorFlow).
#    tensorflow instead of tensorflow-cpu: both install the same `tensorflow` package
#    directory, so they must never be installed together.
#      a. the constraints and requirements without tensorflow-cpu;
#      b. tensorflow[and-cuda] at the version constraints.txt pins for tensorflow-cpu;
#      c. driftlab's other dependencies (docker/requirements.txt = pyproject's), under
#         the same constraints.
COPY constraints.txt docker/requirements.txt ./
RUN grep -viE '^tensorflow[-_]cpu==' constraints.txt > /tmp/constraints-gpu.txt \
 && grep -viE '^tensorflow[-_]cpu==' requirements.txt > /tmp/requirements-gpu.txt \
 && pip install -c /tmp/constraints-gpu.txt "tensorflow[and-cuda]==2.21.0" -r /tmp/requirements-gpu.txt \
 && rm /tmp/constraints-gpu.txt /tmp/requirements-gpu.txt

# 2. driftlab itself without dependencies (it names tensorflow-cpu, which stays out;
#    for the same reason there is no `pip check`). components/ and pipelines/ install
#    inside the package, so the build directory is removed afterwards.
COPY pyproject.toml README.md LICENSE ./
COPY driftlab/ driftlab/
COPY components/ components/
COPY pipelines/ pipelines/
RUN pip install --no-deps . \
 && python -P -c "import driftlab, driftlab.components, driftlab.pipelines, tensorflow, keras, optuna, kfp" \
 && rm -rf /tmp/driftlab-build

USER 10001:10001
WORKDIR /home/driftlab
CMD ["driftlab", "--help"]
