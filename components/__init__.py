"""KFP components: one thin ``@dsl.component`` per stage.

Module level imports only the standard library and ``kfp``; each component
body imports ``driftlab`` and calls one function of ``driftlab.stages``.
"""

from components.aggregate_drift import aggregate_drift
from components.check_gate import check_gate
from components.plan_nodes import plan_nodes
from components.prepare import prepare
from components.retrain_across_nodes import retrain_across_nodes
from components.retrain_across_seeds import retrain_across_seeds
from components.select_best import select_best
from components.tune import tune

__all__ = ["aggregate_drift", "check_gate", "plan_nodes", "prepare", "retrain_across_nodes", "retrain_across_seeds",
           "select_best", "tune"]
