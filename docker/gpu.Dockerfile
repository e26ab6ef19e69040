# driftlab GPU image: the pipeline's training steps on GPU node pools.
#   docker build -f docker/gpu.Dockerfile -t driftlab-gpu:0.1.0 .
#
# Same base as the CPU image (same Python, same Debian userland), so a CPU-vs-GPU
# difference in a drift report is the hardware and its kernels, not the OS.
# GPU support comes from TensorFlow's own CUDA wheels: `tensorflow[and-cuda]` pulls the
# pinned CUDA 12 / cuDNN user-space libraries (nvidia-*-cu12) that this TensorFlow was
# built against, so no nvidia/cuda base image is needed; only the node's NVIDIA driver,
# which the NVIDIA container toolkit / GPU device plugin mounts into the container.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    DRIFTLAB_SOURCE_DIR=/opt/driftlab \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

RUN groupadd --gid 10001 driftlab \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/driftlab \
      --shell /usr/sbin/nologin driftlab

WORKDIR /opt/driftlab
COPY pyproject.toml constraints.txt ./
COPY driftlab/ driftlab/
COPY components/ components/
COPY pipelines/ pipelines/
# tensorflow instead of tensorflow-cpu: both install the same `tensorflow` package
# directory, so they must never be installed together.
#   1. the constraints without tensorflow-cpu;
#   2. tensorflow[and-cuda] at the same version constraints.txt pins for tensorflow-cpu;
#   3. driftlab's other dependencies from pyproject.toml, under the same constraints;
#   4. driftlab itself without dependencies (it names tensorflow-cpu, which stays out).
RUN grep -viE '^tensorflow[-_]cpu==' constraints.txt > /tmp/constraints-gpu.txt \
 && python -c "import tomllib, re; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements-gpu.txt', 'w').write('\n'.join(d for d in deps if not re.match(r'tensorflow[-_]cpu\b', d, re.I)) + '\n')" \
 && pip install -c /tmp/constraints-gpu.txt "tensorflow[and-cuda]==2.21.0" -r /tmp/requirements-gpu.txt \
 && pip install --no-deps . \
 && python -c "import driftlab, tensorflow, keras, optuna, kfp" \
 && rm /tmp/constraints-gpu.txt /tmp/requirements-gpu.txt

USER 10001:10001
WORKDIR /home/driftlab
CMD ["driftlab", "--help"]
