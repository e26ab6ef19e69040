# driftlab CPU image: the pipeline's CPU steps and the scheduled submitter.
#   docker build -f docker/cpu.Dockerfile -t driftlab-cpu:0.1.0 .
# Every version is pinned: the base by its full tag, Python packages by constraints.txt.
# A run record fingerprints the image's libraries, so an unpinned rebuild would be a
# drift source of its own.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    DRIFTLAB_SOURCE_DIR=/opt/driftlab

RUN groupadd --gid 10001 driftlab \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/driftlab \
      --shell /usr/sbin/nologin driftlab

WORKDIR /opt/driftlab
COPY pyproject.toml constraints.txt ./
COPY driftlab/ driftlab/
# The pipeline definition and its components, for `driftlab submit` / `driftlab compile`.
COPY components/ components/
COPY pipelines/ pipelines/
RUN pip install -c constraints.txt . \
 && pip check \
 && python -c "import driftlab, tensorflow, keras, optuna, kfp"

USER 10001:10001
WORKDIR /home/driftlab
CMD ["driftlab", "--help"]
