"""The driftlab pipeline: one definition for the cluster and for ``kfp.local``.
# No "from __future__ import annotations" here: KFP reads the real annotation types.

prepare ─> tune ×W (ParallelFor) ─> select_best ─> retrain_across_seeds
                                         └─> plan_nodes ─> retrain_across_nodes ×P (ParallelFor,
                                                            after retrain_across_seeds)
                                                        └─> aggregate_drift ─> check_gate

Placement (node selectors, tolerations, accelerators, secrets) is attached in
``pipelines.placement``, never inside components; ``kfp.local`` ignores it.
Each training task runs beside a small ``pool_placement`` step that resolves
its profile's node selector, tolerations, accelerator, requests and image
from the experiment file (the reference profile for tune and retrain across
seeds, the loop item's profile for retrain across nodes). An exit handler
records every cluster run's outcome, failures included.

Compile: ``kfp dsl compile --py pipelines/driftlab_pipeline.py --output pipelines/driftlab.yaml``
(or ``driftlab compile``); importing this module builds the graph and runs nothing.
"""


import os

from kfp import dsl

from driftlab.components import (aggregate_drift, check_gate, plan_nodes, prepare, retrain_across_nodes, retrain_across_seeds,
                        select_best, tune)
from driftlab.components.images import CPU_IMAGE, GPU_IMAGE
from driftlab.pipelines import pod
from driftlab.components.pool_placement import pool_placement
from driftlab.components.record_outcome import record_outcome

PIPELINE_NAME = "driftlab"

# Retries with backoff ride out preempted nodes and database restarts on a
# cluster. Locally a failure is a bug to read, not to wait for: `driftlab run`
# sets DRIFTLAB_PIPELINE_RETRIES=0 before this module is imported.
RETRIES = int(os.environ.get("DRIFTLAB_PIPELINE_RETRIES", "3"))


# Parallel Pods per loop: tune workers share one study; node pools are separate node groups.
TUNE_PARALLELISM = 4
NODE_POOL_PARALLELISM = 4

# Small steps read the config and the store; aggregate loads every run's predictions.
SMALL = ("500m", "1Gi")
AGGREGATE = ("1", "4Gi")


def _retry(task, backoff: str = "30s"):
    return pod.retry_with_backoff(task, RETRIES, backoff)


def _on_pool(task, config_yaml, profile, label: str):
    """Place a training task on its profile's pool, resolved by a placement step beside it."""
    where = pool_placement(config_yaml=config_yaml, profile=profile, cpu_image=CPU_IMAGE, gpu_image=GPU_IMAGE)
    pod.request_resources(pod.cluster_task(where, database=False), *SMALL)
    where.set_display_name(f"placement-{label}")
    pod.place_on_pool(task, where.outputs["node_selector"], where.outputs["tolerations"])
    pod.request_resources(task, where.outputs["cpu_request"], where.outputs["memory_request"])
    pod.request_accelerator(task, where.outputs["accelerator_type"], where.outputs["accelerator_count"])
    task.set_container_image(where.outputs["image"])
    return pod.record_node_name(task)


@dsl.pipeline(name=PIPELINE_NAME,
              description="Tune a Keras model with Optuna, retrain it across seeds and hardware, report drift.")
def driftlab_pipeline(config_yaml: str, campaign: str = "default"):
    outcome = record_outcome(config_yaml=config_yaml, campaign=campaign)
    pod.request_resources(pod.cluster_task(outcome, database=True), *SMALL)
    outcome.set_display_name("record-outcome")

    with dsl.ExitHandler(outcome, name="driftlab-run"):
        plan = prepare(config_yaml=config_yaml, campaign=campaign)
        pod.request_resources(pod.cluster_task(plan, database=True), *SMALL)
        plan.set_display_name("prepare")

        with dsl.ParallelFor(plan.output, parallelism=TUNE_PARALLELISM, name="tune-workers") as worker:
            tuner = tune(config_yaml=config_yaml, campaign=campaign, worker_index=worker)
            _retry(_on_pool(pod.cluster_task(tuner, database=True), config_yaml, "", "reference"))

        best = select_best(config_yaml=config_yaml, campaign=campaign,
                           trials_per_worker=dsl.Collected(tuner.output))
        pod.request_resources(pod.cluster_task(best, database=True), *SMALL)

        seeds = retrain_across_seeds(config_yaml=config_yaml, campaign=campaign,
                                     best_params=best.outputs["best_params"])
        _retry(_on_pool(pod.cluster_task(seeds, database=True), config_yaml, "", "reference"))

        nodes_plan = plan_nodes(config_yaml=config_yaml, best_params=best.outputs["best_params"])
        pod.request_resources(pod.cluster_task(nodes_plan, database=False), *SMALL)

        with dsl.ParallelFor(nodes_plan.output, parallelism=NODE_POOL_PARALLELISM, name="node-pools") as node:
            nodes = retrain_across_nodes(config_yaml=config_yaml, campaign=campaign, node=node)
            _retry(_on_pool(pod.cluster_task(nodes, database=True), config_yaml, node.profile, "node-pool"))
            nodes.after(seeds)

        agg = aggregate_drift(config_yaml=config_yaml, campaign=campaign, tuning=best.outputs["tuning"],
                              seeds_summary=seeds.output, nodes_summary=dsl.Collected(nodes.output))
        pod.request_resources(pod.cluster_task(agg, database=True), *AGGREGATE)

        gate = check_gate(gate=agg.outputs["Output"])
        pod.request_resources(pod.cluster_task(gate, database=False), *SMALL)
