"""The experiment file, as pydantic models: every field typed, every key known.

Unknown keys are errors (a typo must not be silently ignored), numbers carry
ranges, and cross-field rules (reference profile exists, plan fits the cap)
are checked here so that nothing starts on a file that cannot finish.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from driftlab import settings

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
BUILDER_PATTERN = r"^mlp$|^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
ISA_CAPS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
            "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX",
            "AVX512_CORE_AMX_FP16")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(Strict):
    """Where the data comes from and how it is split.

    The evaluation set is carved out once with ``eval_seed`` and never moves:
    every run predicts on the same rows. ``split_seed`` (from the seed plan)
    only decides which of the remaining rows train and which validate.
    """

    name: Literal["digits", "synthetic-regression", "csv", "npz"]
    path: str | None = None
    target: str | None = None
    task: Literal["classification", "regression"] | None = None
    n_samples: Annotated[int, Field(ge=50, le=10_000_000)] = 1000
    n_features: Annotated[int, Field(ge=1, le=10_000)] = 10
    noise: Annotated[float, Field(ge=0, le=1e6)] = 0.1
    eval_fraction: Annotated[float, Field(gt=0, lt=0.9)] = 0.2
    val_fraction: Annotated[float, Field(gt=0, lt=0.9)] = 0.2
    eval_seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    standardize: bool = True

    @model_validator(mode="after")
    def _file_fields(self) -> "DatasetConfig":
        if self.name in ("csv", "npz") and not self.path:
            raise ValueError(f"dataset '{self.name}' needs 'path' (the file to read)")
        if self.name == "csv" and not self.target:
            raise ValueError("dataset 'csv' needs 'target' (the name of the label column)")
        if self.name in ("digits", "synthetic-regression") and self.path:
            raise ValueError(f"'path' is only for csv/npz datasets, not '{self.name}'")
        if self.eval_fraction + self.val_fraction >= 0.9:
            raise ValueError("eval_fraction + val_fraction must leave at least 10% of rows for training")
        return self


class ModelConfig(Strict):
    """The model: the built-in MLP or a user builder ``module:function``.

    ``hyperparameters`` are fixed values; tuned ones from ``search_space`` override them.
    """

    builder: Annotated[str, Field(pattern=BUILDER_PATTERN)] = "mlp"
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 10
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 32
    hyperparameters: dict[str, Union[int, float, str, bool, list[int]]] = Field(default_factory=dict)
    #: Seconds one run (or trial) may take before it is stopped and recorded as failed; unset:
    #: derived from ``epochs`` and the runs seen so far (``driftlab.runs.timeouts``).
    run_timeout_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] | None = None


class IntParam(Strict):
    type: Literal["int"]
    low: int
    high: int
    step: Annotated[int, Field(ge=1)] = 1
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> "IntParam":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low < 1:
            raise ValueError("log=true needs low >= 1")
        if self.log and self.step != 1:
            raise ValueError("log=true cannot be combined with step")
        return self


class FloatParam(Strict):
    type: Literal["float"]
    low: float
    high: float
    step: Annotated[float, Field(gt=0)] | None = None
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> "FloatParam":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("log=true needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log=true cannot be combined with step")
        return self


class CategoricalParam(Strict):
    type: Literal["categorical"]
    choices: Annotated[list[Union[int, float, str, bool, None]], Field(min_length=1)]


Param = Annotated[Union[IntParam, FloatParam, CategoricalParam], Field(discriminator="type")]


ENV_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]*$"


class TuningConfig(Strict):
    """Optuna: one study, ``trials`` in total across ``workers``.

    Or start from a study you already ran: ``study`` names it and
    ``storage_env`` names the environment variable holding its storage (an
    RDB URL such as ``postgresql://...`` or ``sqlite:///...``, or a journal
    file: a path, or ``journal:///path``). driftlab then reads that study
    (never writes it), retrains its best trial and does not tune.
    """

    trials: Annotated[int, Field(ge=1, le=100_000)] = 20
    workers: Annotated[int, Field(ge=1, le=256)] = 2
    sampler: Literal["tpe", "random", "cmaes", "grid"] = "tpe"
    pruner: Literal["none", "median", "hyperband"] = "none"
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    direction: Literal["auto", "maximize", "minimize"] = "auto"
    heartbeat_seconds: Annotated[int, Field(ge=1, le=3600)] = 10
    max_retry: Annotated[int, Field(ge=0, le=100)] = 2
    top_k: Annotated[int, Field(ge=1, le=1000)] = 5
    # Retrain the top K configurations (not only the best) over the init × shuffle seeds and report,
    # for each pair, P(A beats B) (Bouthillier et al., MLSys 2021). 1: only the best.
    retrain_top_k: Annotated[int, Field(ge=1, le=10)] = 1
    study: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    storage_env: str | None = None

    @field_validator("storage_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not re.match(ENV_NAME_PATTERN, v):
            hint = (" (it looks like the storage itself: never write it in the file, put it in an "
                    "environment variable and name that here)" if "://" in v or "/" in v or "@" in v else "")
            raise ValueError("must be the NAME of an environment variable holding your Optuna storage "
                             f"(capital letters, digits and '_', e.g. OPTUNA_STORAGE){hint}")
        return v

    @model_validator(mode="after")
    def _existing_study(self) -> "TuningConfig":
        if self.study is not None and self.storage_env is None:
            raise ValueError("tuning.storage_env is required with tuning.study: name the environment variable "
                             "that holds the study's Optuna storage, e.g. storage_env: OPTUNA_STORAGE, and set "
                             "OPTUNA_STORAGE=postgresql://user:password@host/db (or sqlite:///optuna.db, or a "
                             "journal file path)")
        if self.storage_env is not None and self.study is None:
            raise ValueError("tuning.study is required with tuning.storage_env: name the existing Optuna study "
                             "to start from (`optuna studies --storage ...` lists them), or remove storage_env")
        return self


Seed = Annotated[int, Field(ge=0, le=2**31 - 1)]
MAX_PLAN_RUNS = 1_000_000  # the largest seeds.max_runs accepted


MAX_SHARDS = 1000  # pods per stage


class SeedPlanConfig(Strict):
    """The designed experiment over the sources of run-to-run variation."""

    design: Literal["factorial", "one-at-a-time"] = "factorial"
    init: Annotated[list[Seed], Field(min_length=1, max_length=10_000)] = Field(default_factory=lambda: [0])
    shuffle: Annotated[list[Seed], Field(min_length=1, max_length=10_000)] = Field(default_factory=lambda: [0])
    split: Annotated[list[Seed], Field(min_length=1, max_length=10_000)] = Field(default_factory=lambda: [0])
    repeats: Annotated[int, Field(ge=1, le=1000)] = 2
    deterministic: Annotated[list[bool], Field(min_length=1, max_length=2)] = Field(
        default_factory=lambda: [True, False])
    max_runs: Annotated[int, Field(ge=1, le=MAX_PLAN_RUNS)] = 2000
    #: Pods the seed stage is split into on a cluster (each trains every ``shards``-th run);
    #: unset: one per ``DRIFTLAB_RUNS_PER_SHARD`` runs on a cluster, one locally.
    shards: Annotated[int, Field(ge=1, le=MAX_SHARDS)] | None = None

    @field_validator("init", "shuffle", "split", "deterministic")
    @classmethod
    def _unique(cls, v: list) -> list:
        if len(set(v)) != len(v):
            raise ValueError("values must be unique")
        return v

    @model_validator(mode="after")
    def _factorial_size(self) -> "SeedPlanConfig":
        # Counted by multiplication, before anything lists the runs: 2000 seeds in each of three
        # lists make 8e9 runs, which no max_runs allows and no machine can enumerate.
        if self.design == "factorial":
            runs = len(self.init) * len(self.shuffle) * len(self.split) * self.repeats * len(self.deterministic)
            if runs > MAX_PLAN_RUNS:
                raise ValueError(
                    f"the factorial plan crosses {len(self.init)} init × {len(self.shuffle)} shuffle × "
                    f"{len(self.split)} split seeds × {self.repeats} repeats × {len(self.deterministic)} "
                    f"determinism mode(s) = {runs:,} runs, more than any max_runs allows ({MAX_PLAN_RUNS:,}); "
                    "use fewer seeds or repeats, or design: one-at-a-time")
        return self


class Toleration(Strict):
    key: str
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class Accelerator(Strict):
    type: Annotated[str, Field(min_length=1)]
    count: Annotated[int, Field(ge=1, le=64)] = 1


class ProfileConfig(Strict):
    """Where and how a run executes.

    ``kind: cpu`` is a profile of this machine (oneDNN ISA cap, oneDNN on/off,
    thread counts); ``kind: gpu`` is a cluster node pool.
    """

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    kind: Literal["cpu", "gpu"] = "cpu"
    isa: Literal[ISA_CAPS] | None = None  # type: ignore[valid-type]
    onednn: bool = True
    intra_op_threads: Annotated[int, Field(ge=1, le=1024)] = 1
    inter_op_threads: Annotated[int, Field(ge=1, le=1024)] = 1
    tf32: bool | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    accelerator: Accelerator | None = None
    cpu_request: str | None = None
    memory_request: str | None = None
    #: Pods this pool's retrain is split into (e.g. its node count); unset as for ``seeds.shards``.
    shards: Annotated[int, Field(ge=1, le=MAX_SHARDS)] | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> "ProfileConfig":
        if self.kind == "cpu" and self.accelerator is not None:
            raise ValueError("'accelerator' is only for kind: gpu profiles")
        if self.kind == "cpu" and self.tf32 is not None:
            raise ValueError("'tf32' is only for kind: gpu profiles")
        if self.kind == "gpu" and self.isa is not None:
            raise ValueError("'isa' caps the CPU; it is only for kind: cpu profiles")
        return self


class ProfilesConfig(Strict):
    reference: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    auto: bool = False
    pools: list[ProfileConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _reference(self) -> "ProfilesConfig":
        names = [p.name for p in self.pools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"profile names must be unique; repeated: {', '.join(dupes)}")
        if not self.pools and not self.auto:
            raise ValueError("give at least one profile in 'pools', or set auto: true")
        if self.reference is not None and self.pools and self.reference not in names and not self.auto:
            raise ValueError(f"reference '{self.reference}' is not one of the pools: {', '.join(names)}")
        return self


class GateConfig(Strict):
    """Budgets for the tolerance gate; a missing budget is not checked."""

    max_metric_delta: Annotated[float, Field(ge=0)] | None = None
    max_disagreement: Annotated[float, Field(ge=0, le=1)] | None = None
    max_drift_ratio: Annotated[float, Field(ge=0)] | None = None
    max_metric_sd: Annotated[float, Field(ge=0)] | None = None
    min_identical_share: Annotated[float, Field(ge=0, le=1)] | None = None
    max_prediction_diff: Annotated[float, Field(ge=0)] | None = None
    # Share of planned runs that may fail (or never be recorded) before the gate is INCOMPLETE.
    max_failed_share: Annotated[float, Field(ge=0, le=1)] | None = None
    max_delta_by_metric: dict[Literal["accuracy", "rmse", "mae"], Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict)
    per_profile: dict[str, "GateConfig"] = Field(default_factory=dict)


class StorageConfig(Strict):
    """Where studies and run records live.

    The database URL is never written here: it comes from the environment
    variable named by ``url_env`` (a Kubernetes Secret on a cluster). Without
    it, a local SQLite file under ``local_dir`` is used.
    """

    url_env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")] = settings.DB_URL.name
    local_dir: str = ".driftlab"


class ExperimentConfig(Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    dataset: DatasetConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    search_space: dict[str, Param] = Field(default_factory=dict)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    seeds: SeedPlanConfig = Field(default_factory=SeedPlanConfig)
    profiles: ProfilesConfig = Field(default_factory=lambda: ProfilesConfig(auto=True))
    tolerances: GateConfig = Field(default_factory=GateConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)

    @field_validator("search_space")
    @classmethod
    def _param_names(cls, v: dict) -> dict:
        bad = [k for k in v if not re.match(r"^[A-Za-z_]\w*$", k)]
        if bad:
            raise ValueError(f"parameter names must be identifiers; bad: {', '.join(map(repr, bad))}")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> "ExperimentConfig":
        if self.tuning.study is not None and self.search_space:
            raise ValueError("search_space and tuning.study exclude each other: with tuning.study driftlab "
                             "retrains the best trial of that existing study and does not tune; remove "
                             "search_space (or remove tuning.study and tuning.storage_env to tune with driftlab)")
        if self.tuning.retrain_top_k > self.tuning.top_k:
            raise ValueError(f"tuning.retrain_top_k ({self.tuning.retrain_top_k}) cannot exceed tuning.top_k "
                             f"({self.tuning.top_k}): raise top_k or retrain fewer configurations")
        if self.tuning.sampler == "grid":
            if any(not isinstance(p, CategoricalParam) and not _discrete(p) for p in self.search_space.values()):
                raise ValueError("sampler 'grid' needs every search_space parameter to be categorical, "
                                 "int, or float with a step")
        if "tuning" in self.model_fields_set and not self.search_space and not getattr(self.tuning, "study", None):
            raise ValueError("tuning: is set, but search_space is empty, so there is nothing to tune; add "
                             "search_space parameters, set tuning.study (with tuning.storage_env) to start from "
                             "an existing Optuna study, or remove the tuning section to retrain "
                             "model.hyperparameters as they are")
        unknown = set(self.tolerances.per_profile) - {p.name for p in self.profiles.pools}
        if unknown and not self.profiles.auto:
            raise ValueError(f"tolerances.per_profile names unknown profiles: {', '.join(sorted(unknown))}")
        return self

    @property
    def task(self) -> str:
        """dataset.task, else fixed by a built-in dataset, else inferred from a csv/npz target (reads it once)."""
        if self.dataset.task:
            return self.dataset.task
        from driftlab.runs.datasets import task_of  # lazily: driftlab.runs.datasets imports driftlab.config

        return task_of(self.dataset)

    @property
    def direction(self) -> str:
        if self.tuning.direction != "auto":
            return self.tuning.direction
        return "maximize" if self.task == "classification" else "minimize"

    @property
    def metric(self) -> str:
        return "accuracy" if self.task == "classification" else "rmse"


def _discrete(p: IntParam | FloatParam) -> bool:
    return isinstance(p, IntParam) or p.step is not None


GateConfig.model_rebuild()
