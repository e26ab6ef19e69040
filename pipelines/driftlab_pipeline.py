"""The driftlab pipeline: one definition for the cluster and for ``kfp.local``.
# No "from __future__ import annotations" here: KFP reads the real annotation types.

prepare ─> tune ×W (ParallelFor) ─> select_best ─> plan_seeds ─> retrain_across_seeds ×S (ParallelFor
                                         │                          over shards) ─> retrain_top_k
                                         └─> plan_nodes ─> retrain_across_nodes ×P·S (ParallelFor over
                                                            pools × shards, after retrain_across_seeds)
                                                        └─> aggregate_drift ─> check_gate

Placement (node selectors, tolerations, accelerators, secrets) is attached in
``driftlab.pipelines.pod``, never inside components; ``kfp.local`` ignores it.
Each training task runs beside a small ``pool_placement`` step that resolves
its profile's node selector, tolerations, accelerator, requests and image
from the experiment file (the reference profile for tune and retrain across
seeds, the loop item's profile for retrain across nodes). An exit handler
records every cluster run's outcome, failures included.

Compile: ``kfp dsl compile --py pipelines/driftlab_pipeline.py --output pipelines/driftlab.yaml``
(or ``driftlab compile [--image-registry REG]``); importing this module builds the graph and runs nothing.
``build_pipeline(registry=..., retries=...)`` makes the same graph with other images or retries.
"""


from kfp import dsl

from driftlab.components import (aggregate_drift, check_gate, plan_nodes, plan_seeds, pool_placement, prepare,
                                 record_outcome, retrain_across_nodes, retrain_across_seeds, retrain_top_k, select_best, tune)
from driftlab.components.images import DEFAULT_REGISTRY, image_names
from driftlab.pipelines import pod

PIPELINE_NAME = "driftlab"

# Retries with backoff ride out preempted nodes and database restarts on a cluster.
# Locally a failure is a bug to read, not to wait for: `driftlab run` builds the
# pipeline with retries=0.
CLUSTER_RETRIES = 3

# Parallel Pods per loop: tune workers share one study; node pools are separate node groups.
TUNE_PARALLELISM = 4
NODE_POOL_PARALLELISM = 4
SEED_SHARD_PARALLELISM = 8  # shards of the seed plan on the reference pool

# Small steps read the config and the store; aggregate loads every run's predictions.
SMALL = ("500m", "1Gi")
AGGREGATE = ("1", "4Gi")


def build_pipeline(*, registry: str = DEFAULT_REGISTRY, retries: int = CLUSTER_RETRIES):
    """The driftlab pipeline, with its images from ``registry`` and ``retries`` per training task.

    Args:
        registry: Where the driftlab-cpu / driftlab-gpu images are pushed (``driftlab compile
            --image-registry``); every task's image names it, so the compiled pipeline and the
            manifests' ``images:`` block can agree.
        retries: Retries with backoff of each training task (0 for ``driftlab run``).

    Returns:
        The ``@dsl.pipeline`` function (compile it, or call it under ``kfp.local``).
    """
    cpu_image, gpu_image = image_names(registry)

    def small(task, *, database: bool):
        pod.request_resources(pod.cluster_task(task, database=database), *SMALL)
        return task.set_container_image(cpu_image)

    def on_pool(task, config_yaml, profile, label: str):
        """Place a training task on its profile's pool, resolved by a placement step beside it."""
        where = pool_placement(config_yaml=config_yaml, profile=profile, cpu_image=cpu_image, gpu_image=gpu_image)
        small(where, database=False)
        where.set_display_name(f"placement-{label}")
        pod.place_on_pool(task, where.outputs["node_selector"], where.outputs["tolerations"])
        pod.request_resources(task, where.outputs["cpu_request"], where.outputs["memory_request"])
        pod.request_accelerator(task, where.outputs["accelerator_type"], where.outputs["accelerator_count"])
        task.set_container_image(where.outputs["image"])
        return pod.retry_with_backoff(pod.record_node_name(task), retries, "30s")

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Tune a Keras model with Optuna, retrain it across seeds and hardware, report drift.")
    def driftlab_pipeline(config_yaml: str, campaign: str = "default"):
        outcome = small(record_outcome(config_yaml=config_yaml, campaign=campaign), database=True)
        outcome.set_display_name("record-outcome")

        with dsl.ExitHandler(outcome, name="driftlab-run"):
            plan = small(prepare(config_yaml=config_yaml, campaign=campaign), database=True)
            plan.set_display_name("prepare")

            with dsl.ParallelFor(plan.output, parallelism=TUNE_PARALLELISM, name="tune-workers") as worker:
                tuner = tune(config_yaml=config_yaml, campaign=campaign, worker_index=worker)
                # Trials run user code: the study is reached through the proxy, no Secret in the Pod.
                on_pool(pod.use_study_proxy(pod.cluster_task(tuner, database=False)), config_yaml, "", "reference")

            best = small(select_best(config_yaml=config_yaml, campaign=campaign,
                                     trials_per_worker=dsl.Collected(tuner.output)), database=True)

            seeds_plan = small(plan_seeds(config_yaml=config_yaml, best_params=best.outputs["best_params"]),
                               database=False)

            with dsl.ParallelFor(seeds_plan.output, parallelism=SEED_SHARD_PARALLELISM, name="seed-shards") as part:
                seeds = retrain_across_seeds(config_yaml=config_yaml, campaign=campaign, best_params=part.best_params,
                                             shard_index=part.shard_index, shard_count=part.shard_count)
                on_pool(pod.cluster_task(seeds, database=True), config_yaml, "", "reference")

            nodes_plan = small(plan_nodes(config_yaml=config_yaml, best_params=best.outputs["best_params"]),
                               database=False)

            with dsl.ParallelFor(nodes_plan.output, parallelism=NODE_POOL_PARALLELISM, name="node-pools") as node:
                nodes = retrain_across_nodes(config_yaml=config_yaml, campaign=campaign, node=node)
                on_pool(pod.cluster_task(nodes, database=True), config_yaml, node.profile, "node-pool")
                nodes.after(seeds)

            runner_ups = retrain_top_k(config_yaml=config_yaml, campaign=campaign, tuning=best.outputs["tuning"])
            on_pool(pod.cluster_task(runner_ups, database=True), config_yaml, "", "reference")
            runner_ups.after(seeds)  # one stage at a time on the reference pool's cores

            agg = aggregate_drift(config_yaml=config_yaml, campaign=campaign, tuning=best.outputs["tuning"],
                                  seeds_summary=dsl.Collected(seeds.output), nodes_summary=dsl.Collected(nodes.output))
            agg.after(runner_ups)
            pod.request_resources(pod.cluster_task(agg, database=True), *AGGREGATE)
            agg.set_container_image(cpu_image)

            small(check_gate(gate=agg.outputs["Output"]), database=False)

    return driftlab_pipeline


# What `kfp dsl compile --py pipelines/driftlab_pipeline.py` finds: the default registry, cluster retries.
driftlab_pipeline = build_pipeline()
