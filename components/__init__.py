"""KFP components: one thin ``@dsl.component`` per stage.

Module level imports only the standard library and ``kfp``; each component
body imports ``driftlab`` and calls one function of ``driftlab.stages``.
"""

from driftlab.components.aggregate_drift import aggregate_drift
from driftlab.components.check_gate import check_gate
from driftlab.components.plan_nodes import plan_nodes
from driftlab.components.plan_seeds import plan_seeds
from driftlab.components.pool_placement import pool_placement
from driftlab.components.prepare import prepare
from driftlab.components.record_outcome import record_outcome
from driftlab.components.retrain_across_nodes import retrain_across_nodes
from driftlab.components.retrain_across_seeds import retrain_across_seeds
from driftlab.components.retrain_top_k import retrain_top_k
from driftlab.components.select_best import select_best
from driftlab.components.tune import tune

__all__ = ["aggregate_drift", "check_gate", "plan_nodes", "plan_seeds", "pool_placement", "prepare", "record_outcome",
           "retrain_across_nodes", "retrain_across_seeds", "retrain_top_k", "select_best", "tune"]
