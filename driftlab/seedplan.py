"""Seed plans: which runs separate which source of variation.

``factorial`` crosses init × shuffle × split seeds × repeats × determinism.
``one-at-a-time`` holds every seed at its first value and varies one source
at a time, so a small budget still answers "how much does each source move
the result". Hardware is varied by the retrain-across-nodes stage, which runs
the deterministic part of the same plan on every profile.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from driftlab.config import SeedPlanConfig


class PlanTooLarge(ValueError):
    """A plan above the configured run cap."""


@dataclass(frozen=True, order=True)
class SeedPoint:
    init_seed: int
    shuffle_seed: int
    split_seed: int
    repeat: int
    deterministic: bool


def seed_points(plan: SeedPlanConfig, *, deterministic: list[bool] | None = None) -> list[SeedPoint]:
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
    det = [d for d in plan.deterministic if d] or list(plan.deterministic)
    return seed_points(plan, deterministic=det)


def planned_total(plan: SeedPlanConfig, n_profiles: int) -> int:
    return len(seed_points(plan)) + max(0, n_profiles - 1) * len(node_points(plan))


def check_cap(plan: SeedPlanConfig, n_profiles: int) -> int:
    total = planned_total(plan, n_profiles)
    if total > plan.max_runs:
        raise PlanTooLarge(
            f"seeds: the plan needs {total} runs ({len(seed_points(plan))} across seeds + "
            f"{len(node_points(plan))} on each of {n_profiles - 1} other profile(s)), above "
            f"seeds.max_runs={plan.max_runs}; use fewer seeds or repeats, design: one-at-a-time, "
            "or raise max_runs")
    return total
