"""Every group of runs ``analyze`` compares, listed from the runs' scalars before any array is read.

The groups come from the same functions the statistics use (``sources.source_groups``,
``hardware.profile_pairs`` and ``matrix_groups``, ``determinism.repeat_groups`` and
``switch_pairs``), so ``stream.measure_all`` can measure each one once, block by block, before
the statistics ask for it. A group missing here would still be measured when first asked for
(``groupstats.Measured``), only slower: its runs' arrays read on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from driftlab.drift.determinism import repeat_groups, switch_pairs
from driftlab.drift.groupstats import group_key
from driftlab.drift.hardware import matrix_groups, profile_pairs
from driftlab.drift.pairs import correlated_groups
from driftlab.drift.runs import Run
from driftlab.drift.sources import SOURCES, source_groups


@dataclass
class Wanted:
    """One group to measure, and which of its statistics the analysis reads."""

    group: list[Run]
    examples: bool = False  # churn and Jordan's check (the sources' groups)
    corr: bool = False  # correlations (the first groups of a comparison)


def comparisons(runs: Sequence[Run], *, reference: str, mode: bool) -> list[tuple[list[list[Run]], bool]]:
    """``(groups, examples)`` of every comparison of ``analyze``, in the order it makes them."""
    out: list[tuple[list[list[Run]], bool]] = [(source_groups(runs, s, reference, mode), True) for s in SOURCES]
    out += [(pairs, False) for pairs in profile_pairs(runs, reference=reference, mode=mode).values()]
    profiles = [reference] + sorted({r.profile for r in runs} - {reference})
    out += [(cell, False) for cell in matrix_groups(runs, mode=mode, profiles=profiles).values()]
    ref = [r for r in runs if r.profile == reference]
    out += [(repeat_groups(ref, True), False), (repeat_groups(ref, False), False)]
    out += [(repeat_groups([r for r in runs if r.profile == p], True), False) for p in sorted({r.profile for r in runs})]
    out.append((switch_pairs(runs, reference=reference), False))
    return out


def wanted_groups(runs: Sequence[Run], *, reference: str, mode: bool) -> list[Wanted]:
    """Each distinct group of ``comparisons`` once, with everything any comparison reads of it."""
    found: dict[tuple[int, ...], Wanted] = {}
    for groups, examples in comparisons(runs, reference=reference, mode=mode):
        correlated = {id(g) for g in correlated_groups(groups)}
        for g in groups:
            if len(g) < 2:
                continue
            w = found.setdefault(group_key(g), Wanted(list(g)))
            w.examples |= examples
            w.corr |= id(g) in correlated
    return list(found.values())
