"""The driftlab pipeline: one definition for the cluster and for ``kfp.local``.
# No "from __future__ import annotations" here: KFP reads the real annotation types.

prepare ─> tune ×W (ParallelFor) ─> select_best ─> retrain_across_seeds
                                         └─> plan_nodes ─> retrain_across_nodes ×P (ParallelFor,
                                                            after retrain_across_seeds)
                                                        └─> aggregate_drift ─> check_gate

Placement (node selectors, tolerations, accelerators, secrets) is attached in
``pipelines.placement``, never inside components; ``kfp.local`` ignores it.
"""


import os

from kfp import dsl

from components import (aggregate_drift, check_gate, plan_nodes, prepare, retrain_across_nodes, retrain_across_seeds,
                        select_best, tune)

PIPELINE_NAME = "driftlab"

# Retries with backoff ride out preempted nodes and database restarts on a
# cluster. Locally a failure is a bug to read, not to wait for: `driftlab run`
# sets DRIFTLAB_PIPELINE_RETRIES=0 before this module is imported.
RETRIES = int(os.environ.get("DRIFTLAB_PIPELINE_RETRIES", "3"))


def _retry(task, backoff: str = "30s"):
    if RETRIES > 0:
        task.set_retry(num_retries=RETRIES, backoff_duration=backoff, backoff_factor=2.0)
    return task


@dsl.pipeline(name=PIPELINE_NAME,
              description="Tune a Keras model with Optuna, retrain it across seeds and hardware, report drift.")
def driftlab_pipeline(config_yaml: str, campaign: str = "default"):
    plan = prepare(config_yaml=config_yaml, campaign=campaign)
    plan.set_caching_options(False)
    plan.set_display_name("prepare")

    with dsl.ParallelFor(plan.output, parallelism=4, name="tune-workers") as worker:
        tuner = tune(config_yaml=config_yaml, campaign=campaign, worker_index=worker)
        _retry(tuner.set_caching_options(False))

    best = select_best(config_yaml=config_yaml, campaign=campaign,
                       trials_per_worker=dsl.Collected(tuner.output))
    best.set_caching_options(False)

    seeds = retrain_across_seeds(config_yaml=config_yaml, campaign=campaign,
                                 best_params=best.outputs["best_params"])
    _retry(seeds.set_caching_options(False))

    nodes_plan = plan_nodes(config_yaml=config_yaml, best_params=best.outputs["best_params"])
    nodes_plan.set_caching_options(False)

    with dsl.ParallelFor(nodes_plan.output, parallelism=4, name="node-pools") as node:
        nodes = retrain_across_nodes(config_yaml=config_yaml, campaign=campaign, node=node)
        _retry(nodes.set_caching_options(False))
        nodes.after(seeds)

    agg = aggregate_drift(config_yaml=config_yaml, campaign=campaign, tuning=best.outputs["tuning"],
                          seeds_summary=seeds.output, nodes_summary=dsl.Collected(nodes.output))
    agg.set_caching_options(False)

    gate = check_gate(gate=agg.outputs["Output"])
    gate.set_caching_options(False)
