"""Tuning: one Optuna study shared by many workers, stored in a database.

The study is created once (``create_study``) before workers fan out; each
worker loads it (``run_worker``) and optimizes until the global trial budget
is reached. On a cluster the storage is the PostgreSQL database in
``DRIFTLAB_DB_URL`` (Optuna's own schema, readable by optuna-dashboard and the
``optuna`` CLI); locally it is Optuna's journal file, which takes concurrent
worker processes without SQLite's "database is locked".
"""

from __future__ import annotations

import logging
import os
from typing import Any

import optuna

from driftlab.config import CategoricalParam, ExperimentConfig, FloatParam, IntParam

log = logging.getLogger(__name__)

COUNTED_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def study_name(config: ExperimentConfig, campaign: str) -> str:
    return f"driftlab.{config.name}.{campaign}"


def storage_for(config: ExperimentConfig) -> optuna.storages.BaseStorage:
    url = os.environ.get(config.storage.url_env, "").strip()
    heartbeat = config.tuning.heartbeat_seconds
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=config.tuning.max_retry)
    if url:
        engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if not url.startswith("sqlite"):
            engine_kwargs.update(pool_size=2, max_overflow=2, pool_recycle=1800)
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat,
                                          grace_period=heartbeat * 3, heartbeat_stale_trial_callback=retry)
    from driftlab.store import local_dir

    path = local_dir(config.storage.local_dir) / "optuna-journal.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(path)))


def make_sampler(config: ExperimentConfig, worker_index: int) -> optuna.samplers.BaseSampler:
    # Each worker gets its own seed: workers with one seed would propose the same points.
    seed = config.tuning.seed + worker_index
    kind = config.tuning.sampler
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, config.tuning.trials // 3)))
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.GridSampler(grid_space(config), seed=seed)


def grid_space(config: ExperimentConfig) -> dict[str, list[Any]]:
    space: dict[str, list[Any]] = {}
    for name, p in config.search_space.items():
        if isinstance(p, CategoricalParam):
            space[name] = list(p.choices)
        elif isinstance(p, IntParam):
            space[name] = list(range(p.low, p.high + 1, p.step))
        else:
            n = int(round((p.high - p.low) / p.step)) + 1
            space[name] = [p.low + i * p.step for i in range(n)]
    return space


def make_pruner(config: ExperimentConfig) -> optuna.pruners.BasePruner:
    if config.tuning.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if config.tuning.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.model.epochs)
    return optuna.pruners.NopPruner()


def suggest(trial: optuna.Trial, config: ExperimentConfig) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, p in config.search_space.items():
        if isinstance(p, IntParam):
            params[name] = trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
        elif isinstance(p, FloatParam):
            params[name] = trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
        else:
            params[name] = trial.suggest_categorical(name, p.choices)
    return params


def create_study(config: ExperimentConfig, campaign: str) -> str:
    """Create the study once (idempotent: a re-run loads and resumes it)."""
    name = study_name(config, campaign)
    study = optuna.create_study(storage=storage_for(config), study_name=name, direction=config.direction,
                                load_if_exists=True)
    study.set_user_attr("experiment", config.name)
    study.set_user_attr("metric", f"val_{config.metric}")
    return name


def counted_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=COUNTED_STATES))


def run_worker(config: ExperimentConfig, campaign: str, worker_index: int, objective) -> int:
    """Optimize until the study holds ``tuning.trials`` finished trials; returns trials run here."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name(config, campaign), storage=storage_for(config),
                              sampler=make_sampler(config, worker_index), pruner=make_pruner(config))
    budget = config.tuning.trials
    ran = 0
    while True:
        active = len(study.get_trials(deepcopy=False, states=COUNTED_STATES + (
            optuna.trial.TrialState.RUNNING,)))
        if active >= budget:
            return ran
        study.optimize(objective, n_trials=1, catch=(Exception,),
                       callbacks=[optuna.study.MaxTrialsCallback(budget, states=COUNTED_STATES)])
        ran += 1


def best(config: ExperimentConfig, campaign: str, top_k: int | None = None) -> dict[str, Any]:
    study = optuna.load_study(study_name=study_name(config, campaign), storage=storage_for(config))
    finished = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not finished:
        raise RuntimeError(f"study '{study.study_name}' has no completed trial; see the tune logs")
    reverse = config.direction == "maximize"
    ranked = sorted(finished, key=lambda t: t.value, reverse=reverse)
    k = top_k or config.tuning.top_k
    top = [t.value for t in ranked[:k]]
    return {
        "study": study.study_name,
        "best_params": ranked[0].params,
        "best_value": ranked[0].value,
        "best_trial": ranked[0].number,
        "n_complete": len(finished),
        "n_pruned": len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))),
        "n_failed": len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))),
        "top_k_values": top,
        # How far the best score moves within the top-k: a small spread means
        # the tuner's pick is one of several equally good configurations.
        "top_k_spread": (max(top) - min(top)) if len(top) > 1 else 0.0,
        "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
                   for t in study.get_trials(deepcopy=False)],
    }
