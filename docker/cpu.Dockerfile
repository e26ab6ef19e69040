# driftlab CPU image: the pipeline's CPU steps and the scheduled submitter.
#   docker build -f docker/cpu.Dockerfile -t ghcr.io/driftlab/driftlab-cpu:0.1.0 .
# Every version is pinned: the base by its full tag, Python packages by constraints.txt.
# A run record fingerprints the image's libraries, so an unpinned rebuild would be a
# drift source of its own. The build context is filtered by ../.dockerignore.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

RUN groupadd --gid 10001 driftlab \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/driftlab \
      --shell /usr/sbin/nologin driftlab

WORKDIR /tmp/driftlab-build
# 1. The dependencies, from the pinned sets only: this layer is rebuilt when
#    constraints.txt or docker/requirements.txt (= pyproject's dependencies) change,
#    not when driftlab's code does.
COPY constraints.txt docker/requirements.txt ./
RUN pip install -c constraints.txt -r requirements.txt \
 && pip check

# 2. driftlab itself, without dependencies. components/ and pipelines/ install inside
#    the package (driftlab.components, driftlab.pipelines), so the image needs no source
#    tree: the build directory is removed, and `python -P` imports from site-packages.
COPY pyproject.toml README.md LICENSE ./
COPY driftlab/ driftlab/
COPY components/ components/
COPY pipelines/ pipelines/
RUN pip install --no-deps . \
 && pip check \
 && python -P -c "import driftlab, driftlab.components, driftlab.pipelines, tensorflow, keras, optuna, kfp" \
 && rm -rf /tmp/driftlab-build

USER 10001:10001
WORKDIR /home/driftlab
CMD ["driftlab", "--help"]
