"""Where and how a pipeline task's Pod runs on a cluster: one small function per Pod concern.

Each function takes a task and returns it, like the modules of ``kfp.kubernetes``,
so the pipeline reads as a list of concerns per task. Everything here lands in the
compiled YAML's ``platforms.kubernetes`` section or in the container's resources;
``kfp.local`` ignores both, so ``driftlab run`` executes the same definition with
no placement at all.

What a ParallelFor iteration can vary (kfp 2.17 compiler, KFP 2.x driver):

- node selector and tolerations: yes, from a loop item field
  (``add_node_selector_json`` / ``add_toleration_json`` take a channel);
- CPU and memory requests, accelerator type and count: yes, from a loop item field
  (compiled to the ``resourceCpuRequest`` / ``accelerator.resourceType`` /
  ``accelerator.resourceCount`` placeholders the driver resolves per Pod). A CPU or
  memory value must never be empty (the driver parses it as a quantity); an empty
  accelerator type means "no accelerator" (the driver then sets no limit);
- environment variables: no. A task's env values are literal strings in the compiled
  YAML, copied verbatim into the Pod. Per-profile numerics knobs (TF32, oneDNN ISA
  cap, threads) are therefore applied inside the task, by driftlab's worker
  processes, from the profile the item names (``driftlab.config.profiles.env_for``), before
  TensorFlow is imported.
"""

from __future__ import annotations

import warnings
from typing import Any

from kfp import dsl, kubernetes
from driftlab import settings

# kfp.local ignores resources by design and says so once per task; for `driftlab run`
# that notice is noise, not news (this module is imported before the local run starts).
warnings.filterwarnings("ignore", message=r"Task '.*': settings .* have no effect in the current local runner",
                        category=UserWarning)

# Names the manifests (manifests/README.md) define; the compiled YAML refers to them.
DB_SECRET = "driftlab-db"
DB_URL_ENV = settings.DB_URL.name
POD_LABELS = {"app.kubernetes.io/part-of": "driftlab", "driftlab/role": "pipeline"}
WHERE_ANNOTATION = "driftlab/where"
#: The study-proxy Service (manifests/components/study-proxy): Optuna's gRPC storage proxy.
STUDY_PROXY_ADDRESS = "driftlab-study-proxy:13000"
STUDY_PROXY_ANNOTATION = "driftlab/study-proxy"


def mark_cluster(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Tell the task it runs on a cluster: ``DRIFTLAB_WHERE=cluster`` in the Pod only.

    ``task.set_env_variable`` would also reach ``kfp.local`` (its runners apply a
    container's env), making a local run believe it was on a cluster. The value
    therefore travels as a Pod annotation read back through the downward API: a
    Kubernetes-only path that ``kfp.local`` ignores.

    Args:
        task: Pipeline task.

    Returns:
        The task.
    """
    kubernetes.add_pod_annotation(task, WHERE_ANNOTATION, "cluster")
    kubernetes.use_field_path_as_env(task, settings.WHERE.name, f"metadata.annotations['{WHERE_ANNOTATION}']")
    return task


def use_study_proxy(task: dsl.PipelineTask, address: str = STUDY_PROXY_ADDRESS) -> dsl.PipelineTask:
    """Reach the Optuna study through the study-proxy Service instead of the database.

    A tune task trains the user's model in its Pod; given the database Secret, the URL would
    sit in the environment the container started with (``/proc/1/environ``), where any code of
    the same user reads it. Through the proxy the Pod holds no credential at all
    (``DRIFTLAB_STUDY_GRPC``), and the study stays one shared study in PostgreSQL. Like
    ``mark_cluster``, the address travels as a Pod annotation read through the downward API,
    so ``kfp.local`` (which applies a container's env) keeps its journal file.

    Args:
        task: Pipeline task.
        address: ``host:port`` of the proxy.

    Returns:
        The task.
    """
    kubernetes.add_pod_annotation(task, STUDY_PROXY_ANNOTATION, address)
    kubernetes.use_field_path_as_env(task, settings.STUDY_GRPC.name,
                                     f"metadata.annotations['{STUDY_PROXY_ANNOTATION}']")
    return task


def record_node_name(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Expose the node, Pod and namespace names to a training task (the run fingerprint records them).

    Args:
        task: Pipeline task.

    Returns:
        The task.
    """
    kubernetes.use_field_path_as_env(task, settings.NODE_NAME.name, "spec.nodeName")
    kubernetes.use_field_path_as_env(task, settings.POD_NAME.name, "metadata.name")
    kubernetes.use_field_path_as_env(task, settings.POD_NAMESPACE.name, "metadata.namespace")
    return task


def label_pipeline_pod(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Carry the labels the NetworkPolicy admits to PostgreSQL.

    Args:
        task: Pipeline task.

    Returns:
        The task.
    """
    for key, value in POD_LABELS.items():
        kubernetes.add_pod_label(task, key, value)
    return task


def use_database_secret(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Give the task the database URL from the ``driftlab-db`` Secret, never from a parameter.

    The Secret is required (not optional): without it the Pod does not start, instead
    of silently writing to a throw-away SQLite file inside the container.

    Args:
        task: Pipeline task.

    Returns:
        The task.
    """
    return kubernetes.use_secret_as_env(task, secret_name=DB_SECRET, secret_key_to_env={DB_URL_ENV: DB_URL_ENV})


def place_on_pool(task: dsl.PipelineTask, node_selector: Any, tolerations: Any) -> dsl.PipelineTask:
    """Put the task on a node pool: node selector and tolerations (per iteration when given a loop item field).

    Args:
        task: Pipeline task.
        node_selector: A ``{label: value}`` channel (loop item field or pipeline parameter).
        tolerations: A channel holding a list of Kubernetes tolerations.

    Returns:
        The task.
    """
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    return task


def request_resources(task: dsl.PipelineTask, cpu: Any, memory: Any) -> dsl.PipelineTask:
    """Request CPU and memory (constants or channels; a channel's value must not be empty).

    Args:
        task: Pipeline task.
        cpu: CPU request, e.g. ``"4"`` or ``"500m"``.
        memory: Memory request, e.g. ``"16Gi"``.

    Returns:
        The task.
    """
    return task.set_cpu_request(cpu).set_memory_request(memory)


def request_accelerator(task: dsl.PipelineTask, accelerator_type: Any, count: Any) -> dsl.PipelineTask:
    """Request accelerators, e.g. ``nvidia.com/gpu`` × 1; an empty type at run time requests none.

    Args:
        task: Pipeline task.
        accelerator_type: The extended resource name (constant or channel).
        count: How many (constant or channel).

    Returns:
        The task.
    """
    return task.set_accelerator_type(accelerator_type).set_accelerator_limit(count)


def run_every_time(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Turn KFP's cache off: driftlab resumes by its own run keys, and a cached step would skip the store.

    Args:
        task: Pipeline task.

    Returns:
        The task.
    """
    return task.set_caching_options(False)


def retry_with_backoff(task: dsl.PipelineTask, retries: int, backoff: str = "30s") -> dsl.PipelineTask:
    """Retry a failed task with exponential backoff (preempted nodes, database restarts).

    Args:
        task: Pipeline task.
        retries: How many retries; 0 sets none.
        backoff: The first wait; it doubles with every retry.

    Returns:
        The task.
    """
    if retries > 0:
        task.set_retry(num_retries=retries, backoff_duration=backoff, backoff_factor=2.0)
    return task


def cluster_task(task: dsl.PipelineTask, *, database: bool) -> dsl.PipelineTask:
    """What every driftlab task gets: cluster marker, pod labels, no cache, and the database if it uses one.

    Args:
        task: Pipeline task.
        database: Whether the task reads or writes the results store / Optuna study.

    Returns:
        The task.
    """
    mark_cluster(task)
    label_pipeline_pod(task)
    run_every_time(task)
    if database:
        use_database_secret(task)
    return task
