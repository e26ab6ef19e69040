"""Submit the driftlab pipeline to a Kubeflow Pipelines server: one run, or a recurring one.

Both go through ``kfp.Client`` (the KFP v2beta1 REST API). The pipeline's
only arguments are the experiment file's text and a campaign name; the
database URL never travels with them (pipeline Pods read it from the
``driftlab-db`` Secret), and placement is resolved inside the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from driftlab.errors import BadInput
from driftlab.config import ExperimentConfig, load_config_text, read_config_text
from driftlab import settings

PIPELINE_NAME = "driftlab"
SERVICE_ACCOUNT = "driftlab-pipeline"  # manifests/components/core/rbac.yaml
DB_URL_ENV = settings.DB_URL.name  # the key of Secret driftlab-db the pipeline maps to this variable
HOST_ENV = "KFP_HOST"
#: The variable the kfp SDK itself reads for the API address; used when KFP_HOST is unset.
SDK_HOST_ENV = "KF_PIPELINES_ENDPOINT"
NAMESPACE_ENV = "KFP_NAMESPACE"
TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
DEFAULT_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
# KFP's scheduled-workflow controller replaces [[ScheduledTime]] in recurring-run parameters,
# so every scheduled run measures under a campaign of its own.
SCHEDULED_CAMPAIGN = "scheduled-[[ScheduledTime]]"
CRON_FIELD = re.compile(r"^[0-9A-Za-z*?/,#LW-]+$")


class SubmitError(BadInput):
    """A submission refused before anything reached the server, with the fix in the message."""


@dataclass(frozen=True)
class Submitted:
    """What the server created."""

    kind: str  # "run" or "recurring run"
    id: str
    name: str
    experiment_id: str
    campaign: str
    pipeline_version_id: str | None = None


def resolve_host(host: str | None) -> str:
    """The KFP API address from ``--host``, ``KFP_HOST`` or ``KF_PIPELINES_ENDPOINT`` (the kfp SDK's).

    Args:
        host: The ``--host`` value, if given.

    Returns:
        The address, e.g. ``http://ml-pipeline.kubeflow.svc.cluster.local:8888``.

    Raises:
        SubmitError: Neither is set.
    """
    value = (host or os.environ.get(HOST_ENV, "").strip() or os.environ.get(SDK_HOST_ENV, "")).strip()
    if not value:
        raise SubmitError(f"--host: no KFP API address given; pass --host URL or set {HOST_ENV} or {SDK_HOST_ENV} (e.g. "
                          "http://localhost:8080 after `kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80`)")
    if not value.startswith(("http://", "https://")):
        raise SubmitError(f"--host: '{value}' has no scheme; write http://{value} or https://{value}")
    return value.rstrip("/")


def cron_expression(cron: str) -> str:
    """KFP's six-field cron (seconds first) from a five- or six-field expression.

    Args:
        cron: e.g. ``"0 3 * * *"`` (03:00 daily) or ``"0 0 3 * * *"``.

    Returns:
        The six-field form KFP's scheduler reads.

    Raises:
        SubmitError: Not five or six fields of cron characters.
    """
    fields = cron.split()
    if len(fields) not in (5, 6) or not all(CRON_FIELD.match(f) for f in fields):
        raise SubmitError(f"--cron: '{cron}' is not a cron expression; give five fields "
                          "(minute hour day-of-month month day-of-week, e.g. '0 3 * * *') or six (seconds first)")
    return " ".join(["0", *fields] if len(fields) == 5 else fields)


def check_cluster_config(config: ExperimentConfig, path: str) -> None:
    """Refuse what cannot work on a cluster before anything is submitted.

    Args:
        config: The validated experiment.
        path: Its file, for messages.

    Raises:
        SubmitError: The experiment reads its database URL from another variable than the Secret sets.
    """
    if config.storage.url_env != DB_URL_ENV:
        raise SubmitError(f"{path}: storage.url_env is '{config.storage.url_env}', but on a cluster the database URL "
                          f"arrives as {DB_URL_ENV} (Secret driftlab-db); set storage.url_env: {DB_URL_ENV}")
    from driftlab.cluster.pools import cluster_profiles

    cluster_profiles(config)  # raises ProfileError naming the field, e.g. an unknown reference


REGISTRY_ENV = settings.IMAGE_REGISTRY.name
REGISTRY_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9._:-]*[a-z0-9])?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$")


def image_registry(value: str | None = None) -> str:
    """The image registry: ``--image-registry``, else ``DRIFTLAB_IMAGE_REGISTRY``, else the default.

    Raises:
        SubmitError: A value that is not a registry path (it names the flag and an example).
    """
    from driftlab.components.images import DEFAULT_REGISTRY

    chosen = (value or os.environ.get(REGISTRY_ENV, "")).strip().rstrip("/") or DEFAULT_REGISTRY
    if not REGISTRY_PATTERN.match(chosen):
        raise SubmitError(f"--image-registry: {chosen[:80]!r} is not an image registry path; use e.g. "
                          f"europe-docker.pkg.dev/my-project/driftlab or {DEFAULT_REGISTRY} (no tag, no scheme)")
    return chosen


def compile_pipeline(path: Path | str, *, registry: str | None = None, retries: int | None = None) -> Path:
    """Compile the pipeline to ``path`` with its images in ``registry`` (see ``image_registry``)."""
    from kfp import compiler

    from driftlab.pipelines.driftlab_pipeline import CLUSTER_RETRIES, build_pipeline

    definition = build_pipeline(registry=image_registry(registry),
                                retries=CLUSTER_RETRIES if retries is None else retries)
    compiler.Compiler().compile(definition, str(path))
    return Path(path)


def pipeline_package(out_dir: Path, package: str | None = None, *, registry: str | None = None) -> Path:
    """The compiled pipeline to submit: ``package`` if given, else compiled from the definition now.

    Args:
        out_dir: Where to write the compiled YAML.
        package: A compiled pipeline YAML to use as it is.
        registry: Image registry when compiling (``--image-registry``; ignored with ``package``).

    Returns:
        The YAML's path.

    Raises:
        SubmitError: The package is missing, or the pipeline definition cannot be found.
    """
    if package:
        path = Path(package)
        if not path.is_file():
            raise SubmitError(f"--package: {package} does not exist; compile one with `driftlab compile --output FILE`")
        return path
    # Installed with the package (driftlab.pipelines), so a wheel compiles and submits too.
    return compile_pipeline(out_dir / "driftlab.yaml", registry=registry)


def make_client(host: str, namespace: str | None):
    """A ``kfp.Client`` for ``host``; authenticates with the projected KFP token when one is mounted.

    Args:
        host: The KFP API address.
        namespace: The KFP (profile) namespace, for multi-user deployments.

    Returns:
        The client.
    """
    import warnings

    from kfp import Client
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    token_path = os.environ.get(TOKEN_PATH_ENV) or DEFAULT_TOKEN_PATH
    credentials = ServiceAccountTokenVolumeCredentials(path=token_path) if Path(token_path).is_file() else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
        return Client(host=host, namespace=namespace or "kubeflow", credentials=credentials)


def _quietly(call: Callable[..., Any], *args, **kwargs) -> Any:
    # kfp.Client prints UI links for every object it creates; driftlab prints its own summary.
    with contextlib.redirect_stdout(io.StringIO()):
        return call(*args, **kwargs)


def _prepare(config_path: str, package: str | None, out_dir: Path, registry: str | None = None
             ) -> tuple[ExperimentConfig, str, Path]:
    text = read_config_text(config_path)  # read once (bounded): the text submitted is the one validated
    config = load_config_text(text, config_path)
    check_cluster_config(config, config_path)
    return config, text, pipeline_package(out_dir, package, registry=registry)


def submit(config_path: str, *, host: str | None = None, run_name: str | None = None,
           experiment: str | None = None, campaign: str = "default", namespace: str | None = None,
           service_account: str = SERVICE_ACCOUNT, package: str | None = None, image_registry: str | None = None,
           client_factory: Callable[[str, str | None], Any] = make_client) -> Submitted:
    """Start one pipeline run of an experiment file.

    Args:
        config_path: The experiment YAML.
        host: KFP API address (else ``KFP_HOST``).
        run_name: The run's name (default: ``<experiment name>-<campaign>``).
        experiment: KFP experiment to file the run under (default: the experiment's ``name``).
        campaign: Campaign; a run with a campaign already measured resumes it.
        namespace: KFP namespace (else ``KFP_NAMESPACE``; multi-user deployments).
        service_account: Kubernetes service account of the run's Pods.
        package: A compiled pipeline YAML; default: compile the definition now.
        image_registry: Registry of the images when compiling (else ``DRIFTLAB_IMAGE_REGISTRY``).
        client_factory: Builds the ``kfp.Client`` (host, namespace).

    Returns:
        The created run.
    """
    host = resolve_host(host)
    namespace = namespace or os.environ.get(NAMESPACE_ENV) or None
    with tempfile.TemporaryDirectory(prefix="driftlab-submit-") as tmp:
        config, text, path = _prepare(config_path, package, Path(tmp), image_registry)
        client = client_factory(host, namespace)
        exp = _quietly(client.create_experiment, experiment or config.name, namespace=namespace)
        name = run_name or f"{config.name}-{campaign}"
        run = _quietly(client.run_pipeline, experiment_id=exp.experiment_id, job_name=name,
                       pipeline_package_path=str(path), params={"config_yaml": text, "campaign": campaign},
                       service_account=service_account)
    return Submitted("run", run.run_id, name, exp.experiment_id, campaign)


def package_digest(path: Path) -> str:
    """A short content digest of a compiled pipeline (names its uploaded version).

    Args:
        path: The compiled YAML.

    Returns:
        12 hex digits.
    """
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def ensure_pipeline_version(client, path: Path) -> tuple[str, str]:
    """Upload the compiled pipeline as a version of pipeline ``driftlab``, unless that exact version exists.

    Args:
        client: A ``kfp.Client``.
        path: The compiled YAML.

    Returns:
        ``(pipeline_id, pipeline_version_id)``.
    """
    pipeline_id = client.get_pipeline_id(PIPELINE_NAME)
    if pipeline_id is None:
        pipeline_id = _quietly(client.upload_pipeline, str(path), pipeline_name=PIPELINE_NAME,
                               description="driftlab: why Keras results do not reproduce").pipeline_id
    version_name = f"{PIPELINE_NAME}-{package_digest(path)}"
    same_name = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name",
                                            "stringValue": version_name}]})
    found = client.list_pipeline_versions(pipeline_id, filter=same_name).pipeline_versions or []
    if found:
        return pipeline_id, found[0].pipeline_version_id
    version = _quietly(client.upload_pipeline_version, str(path), pipeline_version_name=version_name,
                       pipeline_id=pipeline_id)
    return pipeline_id, version.pipeline_version_id


def schedule(config_path: str, *, cron: str, host: str | None = None, name: str | None = None,
             experiment: str | None = None, campaign: str = SCHEDULED_CAMPAIGN, namespace: str | None = None,
             service_account: str = SERVICE_ACCOUNT, max_concurrency: int = 1, catchup: bool = False,
             package: str | None = None, image_registry: str | None = None,
             client_factory: Callable[[str, str | None], Any] = make_client) -> Submitted:
    """Create a KFP recurring run of an experiment file on a cron schedule.

    Args:
        config_path: The experiment YAML (its text is fixed into the schedule).
        cron: Five- or six-field cron expression (UTC).
        host: KFP API address (else ``KFP_HOST``).
        name: The recurring run's name (default: ``<experiment name>-schedule``).
        experiment: KFP experiment (default: the experiment's ``name``).
        campaign: Campaign of every run; the default gives each run its own, by scheduled time.
        namespace: KFP namespace (else ``KFP_NAMESPACE``).
        service_account: Kubernetes service account of the runs' Pods.
        max_concurrency: Runs of this schedule allowed at once.
        catchup: Whether to start runs missed while the schedule was paused.
        package: A compiled pipeline YAML; default: compile the definition now.
        image_registry: Registry of the images when compiling (else ``DRIFTLAB_IMAGE_REGISTRY``).
        client_factory: Builds the ``kfp.Client`` (host, namespace).

    Returns:
        The created recurring run.
    """
    expression = cron_expression(cron)
    if max_concurrency < 1:
        raise SubmitError(f"--max-concurrency: {max_concurrency} must be at least 1")
    host = resolve_host(host)
    namespace = namespace or os.environ.get(NAMESPACE_ENV) or None
    with tempfile.TemporaryDirectory(prefix="driftlab-schedule-") as tmp:
        config, text, path = _prepare(config_path, package, Path(tmp), image_registry)
        client = client_factory(host, namespace)
        pipeline_id, version_id = ensure_pipeline_version(client, path)
        exp = _quietly(client.create_experiment, experiment or config.name, namespace=namespace)
        job_name = name or f"{config.name}-schedule"
        job = _quietly(client.create_recurring_run, experiment_id=exp.experiment_id, job_name=job_name,
                       description=f"driftlab {config.name}, cron '{expression}' (UTC)",
                       cron_expression=expression, max_concurrency=max_concurrency, no_catchup=not catchup,
                       params={"config_yaml": text, "campaign": campaign}, pipeline_id=pipeline_id,
                       version_id=version_id, service_account=service_account)
    return Submitted("recurring run", job.recurring_run_id, job_name, exp.experiment_id, campaign, version_id)
