"""The search space, samplers and pruners, all from the experiment file."""

from __future__ import annotations

from typing import Any

import optuna

from driftlab.config import CategoricalParam, ExperimentConfig, FloatParam, IntParam

#: Random trials before TPE models the space: a third of the budget, 2..10.
TPE_STARTUP_MIN, TPE_STARTUP_MAX = 2, 10


def suggest(trial: optuna.Trial, config: ExperimentConfig) -> dict[str, Any]:
    """Ask ``trial`` for one value per parameter of ``config.search_space``."""
    params: dict[str, Any] = {}
    for name, p in config.search_space.items():
        if isinstance(p, IntParam):
            params[name] = trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
        elif isinstance(p, FloatParam):
            params[name] = trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
        else:
            params[name] = trial.suggest_categorical(name, p.choices)
    return params


def grid_space(config: ExperimentConfig) -> dict[str, list[Any]]:
    """Every point of a gridded search space; a float without ``step`` cannot be gridded."""
    space: dict[str, list[Any]] = {}
    for name, p in config.search_space.items():
        if isinstance(p, CategoricalParam):
            space[name] = list(p.choices)
        elif isinstance(p, IntParam):
            space[name] = list(range(p.low, p.high + 1, p.step))
        elif p.step is None:
            raise ValueError(f"search_space.{name}: the grid sampler needs 'step' on float parameters "
                             f"(e.g. step: {(p.high - p.low) / 4:g}), or use sampler: tpe/random")
        else:
            n = int(round((p.high - p.low) / p.step)) + 1
            space[name] = [p.low + i * p.step for i in range(n)]
    return space


def make_sampler(config: ExperimentConfig, worker_index: int) -> optuna.samplers.BaseSampler:
    """The configured sampler, seeded per worker.

    Each worker gets ``tuning.seed + worker_index``: workers with one seed
    would propose the same points. TPE keeps Optuna 5's ``constant_liar=True``:
    with W workers, up to W trials run at once, and the liar makes TPE treat
    running trials as bad results so that concurrent workers spread out
    instead of all sampling next to the current best. The proposal sequence of
    a multi-worker study depends on timing either way, so seeds make each
    worker's stream reproducible, not the study's exact history.
    """
    seed = config.tuning.seed + worker_index
    kind = config.tuning.sampler
    if kind == "tpe":
        startup = min(TPE_STARTUP_MAX, max(TPE_STARTUP_MIN, config.tuning.trials // 3))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "cmaes":
        # Categorical parameters are sampled independently (CMA-ES is for numbers).
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if kind == "grid":
        return optuna.samplers.GridSampler(grid_space(config), seed=seed)
    raise ValueError(f"tuning.sampler: unknown sampler '{kind}'; use tpe, random, cmaes or grid")


def make_pruner(config: ExperimentConfig) -> optuna.pruners.BasePruner:
    """The configured pruner; trials report the validation metric after each epoch."""
    kind = config.tuning.pruner
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.model.epochs)
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"tuning.pruner: unknown pruner '{kind}'; use none, median or hyperband")
