"""Seed plans: which runs separate which source of variation.

``factorial`` crosses init × shuffle × split seeds × repeats × determinism.
``one-at-a-time`` holds every seed at its first value and varies one source
at a time, so a small budget still answers "how much does each source move
the result". Hardware is varied by the retrain-across-nodes stage, which runs
the deterministic part of the same plan on every profile.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence, TypeVar

from driftlab.errors import BadInput
from driftlab.config import SeedPlanConfig
from driftlab import settings


T = TypeVar("T")

# On a cluster a stage's runs are split into shards of about this many runs,
# one pod each (DRIFTLAB_RUNS_PER_SHARD overrides). Locally one shard: the
# executor already spreads a stage over every core, and each extra process
# would pay TensorFlow's import again.
DEFAULT_RUNS_PER_SHARD = 32


class PlanTooLarge(BadInput):
    """A plan above the configured run cap."""


class ShardError(BadInput):
    """A shard index/count pair that does not name a shard."""


@dataclass(frozen=True, order=True)
class SeedPoint:
    init_seed: int
    shuffle_seed: int
    split_seed: int
    repeat: int
    deterministic: bool


def seed_points(plan: SeedPlanConfig, *, deterministic: list[bool] | None = None) -> list[SeedPoint]:
    """The runs of the seed plan on one profile, sorted, each once.

    Args:
        plan: The validated ``seeds`` section.
        deterministic: Keep only these determinism modes (default: the plan's).

    Returns:
        Sorted, unique seed points.
    """
    modes = plan.deterministic if deterministic is None else [d for d in plan.deterministic if d in deterministic]
    points: set[SeedPoint] = set()
    if plan.design == "factorial":
        for i, s, p, r, d in itertools.product(plan.init, plan.shuffle, plan.split, range(plan.repeats), modes):
            points.add(SeedPoint(i, s, p, r, d))
    else:
        i0, s0, p0 = plan.init[0], plan.shuffle[0], plan.split[0]
        for d in modes:
            for r in range(plan.repeats):
                points.add(SeedPoint(i0, s0, p0, r, d))
            for i in plan.init:
                points.add(SeedPoint(i, s0, p0, 0, d))
            for s in plan.shuffle:
                points.add(SeedPoint(i0, s, p0, 0, d))
            for p in plan.split:
                points.add(SeedPoint(i0, s0, p, 0, d))
    return sorted(points)


def node_points(plan: SeedPlanConfig) -> list[SeedPoint]:
    """The runs every profile repeats: the deterministic runs (or all, if the plan has none)."""
    return seed_points(plan, deterministic=_node_modes(plan))


def count_points(plan: SeedPlanConfig, *, deterministic: list[bool] | None = None) -> int:
    """``len(seed_points(...))`` by arithmetic: a huge plan is counted without being built."""
    modes = plan.deterministic if deterministic is None else [d for d in plan.deterministic if d in deterministic]
    if plan.design == "factorial":
        per_mode = len(plan.init) * len(plan.shuffle) * len(plan.split) * plan.repeats
    else:  # the base point (first seeds, repeat 0) is shared by the four one-source sweeps
        per_mode = plan.repeats + len(plan.init) - 1 + len(plan.shuffle) - 1 + len(plan.split) - 1
    return per_mode * len(modes)


def _node_modes(plan: SeedPlanConfig) -> list[bool]:
    return [d for d in plan.deterministic if d] or list(plan.deterministic)


def planned_total(plan: SeedPlanConfig, n_profiles: int) -> int:
    """Runs of the whole experiment: the seed plan on the reference plus the node runs on each other profile."""
    return count_points(plan) + max(0, n_profiles - 1) * count_points(plan, deterministic=_node_modes(plan))


def top_k_points(plan: SeedPlanConfig) -> list[SeedPoint]:
    """The seed points each runner-up configuration is retrained on: the plan's init and shuffle points at
    the first split, repeat 0, determinism on when the plan has it (points the best configuration ran too)."""
    mode = True in plan.deterministic
    return [p for p in seed_points(plan, deterministic=[mode]) if p.split_seed == plan.split[0] and p.repeat == 0]


def planned_sources(plan: SeedPlanConfig, n_profiles: int) -> list[str]:
    """The sources of variation this plan varies (in report order), whether or not its runs finish."""
    varied = [name for name, seeds in (("init", plan.init), ("shuffle", plan.shuffle), ("split", plan.split))
              if len(seeds) > 1]
    if plan.repeats > 1 and False in plan.deterministic:
        varied.append("nondeterminism")
    if n_profiles > 1:
        varied.append("hardware")
    return varied


def check_cap(plan: SeedPlanConfig, n_profiles: int) -> int:
    """The planned run count, or ``PlanTooLarge`` naming the count, the cap and the fixes.

    Counted, never enumerated, so that a plan of a billion runs is refused at once.
    """
    total = planned_total(plan, n_profiles)
    if total > plan.max_runs:
        raise PlanTooLarge(
            f"seeds: the plan needs {total} runs ({count_points(plan)} across seeds + "
            f"{count_points(plan, deterministic=_node_modes(plan))} on each of {n_profiles - 1} other "
            f"profile(s)), above seeds.max_runs={plan.max_runs}; use fewer seeds or repeats, "
            "design: one-at-a-time, or raise max_runs")
    return total


def _modes(plan: SeedPlanConfig) -> str:
    return {(True,): "determinism on", (False,): "determinism off"}.get(
        tuple(plan.deterministic), "determinism on and off")


def describe(plan: SeedPlanConfig, *, nodes: bool = False) -> str:
    """One line saying what the plan crosses and how many runs that makes, for people.

    Args:
        plan: The validated ``seeds`` section.
        nodes: Describe the runs every other profile repeats instead of the full plan.

    Returns:
        E.g. ``factorial: 2 init × 2 shuffle × 2 split seeds × 2 repeats × determinism on and off = 32 runs``.
    """
    n_points = count_points(plan, deterministic=_node_modes(plan)) if nodes else count_points(plan)
    modes = "determinism on" if nodes and True in plan.deterministic else _modes(plan)
    if plan.design == "factorial":
        body = (f"factorial: {len(plan.init)} init × {len(plan.shuffle)} shuffle × {len(plan.split)} split "
                f"seeds × {plan.repeats} repeats × {modes}")
    else:
        body = (f"one-at-a-time around init={plan.init[0]}, shuffle={plan.shuffle[0]}, split={plan.split[0]}: "
                f"{len(plan.init)} init, {len(plan.shuffle)} shuffle, {len(plan.split)} split seeds, "
                f"{plan.repeats} repeats, {modes}")
    return f"{body} = {n_points} runs"


def shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """The items of shard ``index`` of ``count``: round-robin over the (sorted) plan.

    Round-robin keeps shards within one run of each other in size and mixes
    seeds, so every shard takes about as long. The union of all shards is the
    plan, and no item is in two shards.

    Args:
        items: The plan, in a stable order.
        index: 0-based shard number.
        count: How many shards the plan is split into.

    Returns:
        This shard's items, in plan order.
    """
    if count < 1:
        raise ShardError(f"shard_count: {count} is not a shard count; use 1 or more")
    if not 0 <= index < count:
        raise ShardError(f"shard_index: {index} is not a shard of {count}; use 0..{count - 1}")
    return list(items[index::count])


def runs_per_shard() -> int:
    from driftlab.settings import positive_int

    configured = positive_int(settings.RUNS_PER_SHARD.name, example=DEFAULT_RUNS_PER_SHARD, error=ShardError)
    return configured or DEFAULT_RUNS_PER_SHARD


def shard_count(n_runs: int, *, local: bool, configured: int | None = None) -> int:
    """How many shards (pods) a stage of ``n_runs`` runs is split into.

    ``configured`` (``seeds.shards`` / a pool's ``shards``) wins, here and locally, capped
    at one run per shard; otherwise 1 locally and one per ``DRIFTLAB_RUNS_PER_SHARD`` runs
    on a cluster.
    """
    if n_runs <= 0:
        return 1
    if configured is not None:
        return max(1, min(configured, n_runs))
    if local:
        return 1
    return max(1, math.ceil(n_runs / runs_per_shard()))
