"""Every ``DRIFTLAB_*`` environment variable: its name, what it means, its default, who sets it.

This is the one module that names them; the rest of driftlab reads and sets them through
the ``Setting`` objects below (``settings.JOBS.get()``, ``env[settings.PROFILE.name] = ...``),
and ``tests/config/test_settings.py`` fails on a ``DRIFTLAB_*`` string anywhere else. Three kinds:

- **yours**: knobs a person or a cluster sets (the database URL, retry window, workers, ...);
- **driftlab run → its tasks**: how ``driftlab run`` tells the kfp.local task processes it
  starts where the report, the logs and the local database go (tasks are separate processes:
  the environment is the only channel kfp.local offers besides pipeline parameters, which
  must stay the same on a cluster);
- **pipeline / executor → a process**: what the compiled pipeline puts in a Pod (downward
  API, ``cluster``) and what the executor puts in a worker process (its profile).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

YOURS, RUN_TASKS, PROCESS = "yours", "driftlab run → its tasks", "pipeline / executor → a process"


@dataclass(frozen=True)
class Setting:
    """One environment variable."""

    name: str
    meaning: str
    default: str | None = None
    kind: str = YOURS

    def raw(self) -> str | None:
        """The value as set (stripped); None when unset or empty."""
        value = os.environ.get(self.name, "").strip()
        return value or None

    def get(self) -> str | None:
        """The value, else the default."""
        return self.raw() or self.default

    def is_on(self) -> bool:
        """Set to something other than empty or ``0``."""
        return (self.raw() or "0") != "0"


DB_URL = Setting("DRIFTLAB_DB_URL", "database URL for run records, reports and (on a cluster) Optuna studies; "
                 "a Kubernetes Secret on a cluster. Unset: SQLite and a journal file under storage.local_dir. "
                 "(storage.url_env names another variable.)")
DB_RETRY_S = Setting("DRIFTLAB_DB_RETRY_S", "seconds every database call waits out an unreachable database",
                     "120")
STUDY_GRPC = Setting("DRIFTLAB_STUDY_GRPC", "host:port (or grpc://host:port) of the Optuna gRPC storage proxy "
                     "in front of the study database (`python -m driftlab.tuning.proxy`); set, every study call "
                     "goes through it and the process needs no database URL for the study")
HOME = Setting("DRIFTLAB_HOME", "folder of the local database, logs and reports; overrides storage.local_dir "
               "(`driftlab run --home` sets it)")
JOBS = Setting("DRIFTLAB_JOBS", "worker processes per training stage (`driftlab run --jobs`); default: the "
               "CPUs this process may use ÷ the profile's intra-op threads, one per GPU on GPU pools")
RUNS_PER_SHARD = Setting("DRIFTLAB_RUNS_PER_SHARD", "runs per shard (one Pod each) on a cluster", "32")
IMAGE_REGISTRY = Setting("DRIFTLAB_IMAGE_REGISTRY", "registry of the driftlab-cpu/-gpu images the compiled "
                         "pipeline names (`--image-registry`)", "ghcr.io/driftlab")
REUSE_MODELS = Setting("DRIFTLAB_REUSE_MODELS", "reuse a worker's traced train step across runs of one "
                       "architecture: 0 off, 1 also for user builders", None)
FORK_WORKERS = Setting("DRIFTLAB_FORK_WORKERS", "0: each of the depot's workers imports TensorFlow itself "
                       "instead of being forked from a process that did it once (`driftlab run` only)", "1")
MAX_CONFIG_BYTES = Setting("DRIFTLAB_MAX_CONFIG_BYTES", "the largest experiment file read, in bytes (suffixes "
                           "KiB, MiB, GiB); at most 96KiB: the file travels in one pipeline-task argument",
                           "64KiB")
MAX_DATA_BYTES = Setting("DRIFTLAB_MAX_DATA_BYTES", "the largest csv/npz data file read, in bytes (suffixes KiB, "
                         "MiB, GiB); also bounds each npz array once uncompressed", "2GiB")
MAX_REPORT_BYTES = Setting("DRIFTLAB_MAX_REPORT_BYTES", "the largest report.json read back (`driftlab gate`, "
                           "`report show`, `run`), in bytes (suffixes KiB, MiB, GiB)", "256MiB")
AGGREGATE_BLOCK_BYTES = Setting("DRIFTLAB_AGGREGATE_BLOCK_BYTES", "about how many bytes of run arrays "
                                "aggregate-drift holds at once, counted at 8 per prediction value (suffixes KiB, "
                                "MiB, GiB): less memory, or fewer runs read twice", "64MiB")
AGGREGATE_HELPERS = Setting("DRIFTLAB_AGGREGATE_HELPERS", "helper processes aggregate-drift measures stored "
                            "runs in (0: all in its own process); default: one per usable core, at most 8",
                            None)
BUILD_CHECK_TIMEOUT_S = Setting("DRIFTLAB_BUILD_CHECK_TIMEOUT_S", "seconds `driftlab validate` and `run` wait for "
                                "the model builder to be imported and built once on a dummy batch", "300")
EXECUTION_STALE_S = Setting("DRIFTLAB_EXECUTION_STALE_S", "seconds without a sign of life after which the "
                            "next `driftlab run` marks a `running` execution abandoned when its process cannot be "
                            "checked (another machine); one on this machine whose process is gone is marked at once",
                            "900")
TEST_PG_URL = Setting("DRIFTLAB_TEST_PG_URL", "the PostgreSQL server the tests use",
                      "postgresql://postgres@127.0.0.1:5432/test")

REPORT_DIR = Setting("DRIFTLAB_REPORT_DIR", "where aggregate-drift writes the reports", None, RUN_TASKS)
LOG_DIR = Setting("DRIFTLAB_LOG_DIR", "folder of the run's log and its workers' logs", None, RUN_TASKS)
LOG_FILE = Setting("DRIFTLAB_LOG_FILE", "the run's full log, named after failures", None, RUN_TASKS)
SECRET_FD = Setting("DRIFTLAB_SECRET_FD", "a pipe the task reads its database credentials from (they never "
                    "travel in a task's environment locally)", None, RUN_TASKS)
WORKER_DEPOT = Setting("DRIFTLAB_WORKER_DEPOT", "the socket of the run's warm training workers, lent to its "
                      "tasks across stages (`driftlab run` only)", None, RUN_TASKS)
QUIET = Setting("DRIFTLAB_QUIET", "1: plain progress lines instead of bars", None, RUN_TASKS)
DB_WAIT_AT_OPEN = Setting("DRIFTLAB_DB_WAIT_AT_OPEN", "1: opening the database waits out an outage "
                          "(it was reachable when the run started)", None, RUN_TASKS)

WHERE = Setting("DRIFTLAB_WHERE", "`cluster` in a Pod of the compiled pipeline; else local", "local", PROCESS)
NODE_NAME = Setting("DRIFTLAB_NODE_NAME", "the node a Pod runs on (downward API), for the fingerprint",
                    None, PROCESS)
NODE_POOL = Setting("DRIFTLAB_NODE_POOL", "the node pool, recorded in the fingerprint when a Pod spec sets "
                    "it; else taken from the profile's node selector", None, PROCESS)
POD_NAME = Setting("DRIFTLAB_POD_NAME", "a training Pod's name (downward API), for the fingerprint", None, PROCESS)
POD_NAMESPACE = Setting("DRIFTLAB_POD_NAMESPACE", "a training Pod's namespace (downward API), for the fingerprint",
                        None, PROCESS)
BUILD_CHECK = Setting("DRIFTLAB_BUILD_CHECK", "1 while the model is built once on a dummy batch to check it "
                     "(`validate`, `run`), unset in training: a builder may skip costly work then", None, PROCESS)
PROFILE = Setting("DRIFTLAB_PROFILE", "the profile a worker process trains on", None, PROCESS)
PROFILE_KIND = Setting("DRIFTLAB_PROFILE_KIND", "cpu or gpu: the kind of the worker's profile", None, PROCESS)
NODE_SELECTOR = Setting("DRIFTLAB_NODE_SELECTOR", "the worker's profile's node selector (JSON)", None, PROCESS)
PARENT_PID = Setting("DRIFTLAB_PARENT_PID", "the stage a worker must die with", None, PROCESS)

ALL: tuple[Setting, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Setting))


def positive_int(name: str, *, example: int, error: type[ValueError] = ValueError) -> int | None:
    """``int(os.environ[name])`` when set, else None; a value that is not >= 1 raises ``error``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise error(f"{name}: '{raw}' is not a positive whole number; unset it or use e.g. {example}")
    return value


def table() -> str:
    """The settings as a Markdown table (docs/ARCHITECTURE.md holds it; a test keeps it current)."""
    rows = ["| variable | set by | meaning | default |", "|---|---|---|---|"]
    for s in ALL:
        rows.append(f"| `{s.name}` | {s.kind} | {s.meaning} | {f'`{s.default}`' if s.default else '—'} |")
    return "\n".join(rows) + "\n"
