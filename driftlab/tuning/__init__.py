"""Tuning: one Optuna study shared by many workers, with an exact global trial budget.

The study is created once (``create_study``) before workers fan out; each
worker (``run_worker``) runs free slots of the budget until none is left.
On a cluster the storage is the PostgreSQL database in ``DRIFTLAB_DB_URL``
(Optuna's own schema, readable by optuna-dashboard and the ``optuna`` CLI),
with heartbeats, stale-trial retry and retried connections; locally it is
Optuna's journal file; or Optuna's gRPC storage proxy in front of the database
(``DRIFTLAB_STUDY_GRPC``), so tune workers hold no database password. Modules:
``storage`` (where), ``slots`` (what every storage shares), ``grpc_storage`` and ``proxy`` (the gRPC client and server),
``budget`` (the slot scheme and why), ``claim`` (taking a slot at plain Optuna's
cost), ``search`` (space, samplers, pruners), ``study``
(lifecycle, workers), ``results`` (what retraining gets), ``existing``
(start from a study you already ran: read it, never write it), ``commands``
(storage forms, and the commands that open a study in Optuna's own tools).
The tuning benchmark is ``benchmarks/bench_tune.py``, outside the package.
"""

from __future__ import annotations

from driftlab.tuning.budget import COUNTED_STATES, Counts, counts, effective_budget
from driftlab.tuning.commands import StorageRef, parse_storage, study_commands
from driftlab.tuning.existing import ExistingStudyError, load_existing
from driftlab.tuning.results import best, stability
from driftlab.tuning.search import grid_space, make_pruner, make_sampler, suggest
from driftlab.tuning.storage import NoFreeSlot, storage_for
from driftlab.tuning.study import TuningError, create_study, load_study, run_worker, study_name

__all__ = ["COUNTED_STATES", "Counts", "ExistingStudyError", "NoFreeSlot", "StorageRef", "TuningError", "best",
           "counts", "create_study", "effective_budget", "grid_space", "load_existing", "load_study",
           "make_pruner", "make_sampler", "parse_storage", "run_worker", "stability", "storage_for",
           "study_commands", "study_name", "suggest"]
