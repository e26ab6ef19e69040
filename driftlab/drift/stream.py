"""Measure every compared group while holding the arrays of a few blocks of runs at a time.

Runs read without their arrays (``Store.iter_runs``) are *stored* runs: their predictions,
labels and weights are read (``arrays.iter_arrays``, e.g. a ``Store``) only here:

1. The runs are ordered by seed point, the seed with the most levels outermost, and cut into
   blocks (``block_bytes`` over the blocks held at once, counted at 8 bytes per prediction
   value: the float64 the comparisons use). Blocks end where a seed changes value whenever they
   can, so that each holds whole seed points and, where they fit, whole levels of outer seeds.
2. Block by block: every wanted group whose runs all lie in the block is measured (all profile,
   repeat and determinism comparisons: they stay at one seed point; the groups of the inner
   seeds), and the block's arrays are released. THREADS blocks are read and measured at once;
   with helper processes (``driftlab.drift.helpers``: stored runs, enough of them) one block per
   helper instead, each helper reading its block's arrays itself.
3. The groups that span blocks (the outermost seed's: its levels run across the campaign) are
   then measured a batch of groups at a time, their runs' arrays read again.

Every run is read in its block, once (the outermost seed's groups: twice); what stays is each
group's ``GroupStats`` and each run's scalars. Runs whose arrays are in memory already
(records given with arrays) go through the same blocks, so both give the same numbers.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from driftlab.drift.comparisons import Wanted
from driftlab.drift.floors import row_ses
from driftlab.drift.groupstats import Measured, measure
from driftlab.drift.runs import RecordError, Run

BLOCK_BYTES = 64 * 2 ** 20  # arrays held at once (all blocks), counted at 8 bytes per prediction value
MEASURE_GROUPS = 64  # groups measured together
THREADS = 3  # blocks read and measured at once, each in its own thread
VALUE_BYTES = 8


def run_bytes(run: Run, guess: tuple[int, ...] = ()) -> int:
    """Bytes counted for a run's arrays: its predictions' shape, or ``guess`` while a stored run's is unknown."""
    return VALUE_BYTES * max(1, math.prod(run.shape if run.shape is not None else guess))


class Reader:
    """Reads stored runs' arrays from ``arrays`` (``iter_arrays(keys)``: a Store) for the parts that hold them.

    A run held by several parts at once (the one measured, those read ahead) is read once and keeps
    its arrays until all let go; a part waits for runs another thread is reading.
    """

    def __init__(self, arrays: Any, task: str):
        self.arrays, self.task = arrays, task
        self._cond = threading.Condition()
        self._holds: dict[int, int] = defaultdict(int)
        self._reading: set[int] = set()

    def hold(self, runs: Sequence[Run]) -> list[Run]:
        """Attach the arrays of the stored runs among ``runs``; returns what to pass to :meth:`drop`."""
        held = list({id(r): r for r in runs if r.stored}.values())
        with self._cond:
            for r in held:
                self._holds[id(r)] += 1
        try:
            while True:
                with self._cond:
                    todo = [r for r in held if r.predictions is None and id(r) not in self._reading]
                    if not todo:
                        if not any(id(r) in self._reading for r in held):
                            return held
                        self._cond.wait()
                        continue
                    self._reading.update(id(r) for r in todo)
                try:
                    self._read(todo)
                finally:
                    with self._cond:
                        self._reading.difference_update(id(r) for r in todo)
                        self._cond.notify_all()
        except BaseException:
            self.drop(held)
            raise

    def drop(self, held: Sequence[Run]) -> None:
        with self._cond:
            for r in held:
                self._holds[id(r)] -= 1
                if not self._holds[id(r)]:
                    del self._holds[id(r)]
                    r.release()

    def _read(self, todo: Sequence[Run]) -> None:
        if not todo:
            return
        if self.arrays is None:
            raise ValueError("runs read without their arrays need an array source (a Store) to be compared")
        by_key: dict[str, list[Run]] = defaultdict(list)
        for r in todo:
            by_key[r.key].append(r)
        for key, got in self.arrays.iter_arrays(list(by_key)):
            for r in by_key.pop(key, ()):
                r.attach(got, self.task)
        if by_key:
            raise RecordError(f"run {next(iter(by_key))}: its arrays are no longer in the results database "
                              "(the campaign was removed or replaced meanwhile); aggregate again")

    @contextmanager
    def holding(self, runs: Sequence[Run]) -> Iterator[None]:
        held = self.hold(runs)
        try:
            yield
        finally:
            self.drop(held)

    def each_held(self, parts: Sequence[Sequence[Run]], work: Any, threads: int = THREADS) -> None:
        """``work(i)`` for each part once its runs have their arrays, ``threads`` parts at a time in threads
        (decompression, the database and NumPy's loops let the interpreter go, so reading the next parts
        and measuring overlap on several cores); each part's arrays are dropped once its work is done."""
        def one(i: int) -> None:
            with self.holding(parts[i]):
                work(i)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            running: deque = deque()
            try:
                for i in range(len(parts)):
                    if len(running) >= threads:
                        running.popleft().result()
                    running.append(pool.submit(one, i))
                while running:
                    running.popleft().result()
            except BaseException:
                for future in running:
                    future.cancel()
                raise


def _units(runs: list[Run], axes: Sequence[int], depth: int, budget: int,
           guess: tuple[int, ...]) -> list[list[Run]]:
    """``runs`` (sorted by the seeds in ``axes``) cut at the outermost seed whose levels fit ``budget``."""
    if depth == len(axes) or sum(run_bytes(r, guess) for r in runs) <= budget:
        return [runs]
    out: list[list[Run]] = []
    for _, part in itertools.groupby(runs, key=lambda r: r.seeds[axes[depth]]):
        out += _units(list(part), axes, depth + 1, budget, guess)
    return out


def seed_blocks(runs: Sequence[Run], budget: int = BLOCK_BYTES, guess: tuple[int, ...] = ()) -> list[list[Run]]:
    """The runs in blocks of whole seed points (see the module docstring), each about ``budget`` bytes."""
    levels = [len({r.seeds[a] for r in runs}) for a in range(3)]
    axes = sorted(range(3), key=lambda a: -levels[a])
    ordered = sorted(runs, key=lambda r: tuple(r.seeds[a] for a in axes))
    blocks: list[list[Run]] = []
    current: list[Run] = []
    size = 0
    for unit in _units(ordered, axes, 0, budget, guess):
        unit_size = sum(run_bytes(r, guess) for r in unit)
        if current and size + unit_size > budget:
            blocks.append(current)
            current, size = [], 0
        current += unit
        size += unit_size
    return blocks + ([current] if current else [])


def _measure(wanted: Sequence[Wanted], measured: Measured, budget: int) -> None:
    """Measure groups of one size, shape and need together, at most MEASURE_GROUPS and ``budget`` bytes at once."""
    buckets: dict[tuple, list[Wanted]] = defaultdict(list)
    for w in wanted:
        buckets[(len(w.group), w.group[0].shape, w.examples, w.corr)].append(w)
    for (k, _, examples, corr), bucket in buckets.items():
        step = max(1, min(MEASURE_GROUPS, budget // (k * run_bytes(bucket[0].group[0]))))
        for start in range(0, len(bucket), step):
            part = bucket[start:start + step]
            for w, s in zip(part, measure([w.group for w in part], measured.task, examples=examples, corr=corr)):
                measured.put(w.group, s)


def _batches(wanted: Sequence[Wanted], budget: int, guess: tuple[int, ...] = ()) -> Iterator[list[Wanted]]:
    """Consecutive groups whose distinct runs hold about ``budget`` bytes (at least one group; a run not
    read yet counted at the size ``guess``)."""
    batch: list[Wanted] = []
    seen: set[int] = set()
    size = 0
    for w in wanted:
        new = [r for r in w.group if id(r) not in seen]
        grow = sum(run_bytes(r, guess) for r in new)
        if batch and size + grow > budget:
            yield batch
            batch, seen, size = [], set(), 0
            new, grow = list(w.group), sum(run_bytes(r, guess) for r in w.group)
        batch.append(w)
        seen.update(id(r) for r in new)
        size += grow
    if batch:
        yield batch


def _threads(parts: Sequence[Sequence[Run]], budget: int, guess: tuple[int, ...] = ()) -> int:
    """Parts measured at once: THREADS, fewer when the largest part (a block holds whole seed points, even
    past its share of the budget) and its work arrays would not fit ``budget`` that many times."""
    largest = max((sum(run_bytes(r, guess) for r in p) for p in parts), default=1)
    return max(1, min(THREADS, budget // (2 * largest)))


def measure_all(runs: Sequence[Run], wanted: Sequence[Wanted], *, task: str, arrays: Any = None,
                block_bytes: int = BLOCK_BYTES, helpers: Any = None) -> Measured:
    """Every wanted group's ``GroupStats``, block by block; each run is attached once in its block (so
    every stored run's shape is known after) and, for regression, gets its floor SEs. ``helpers``
    (``driftlab.drift.helpers.Helpers``, started): the parts are measured in those processes."""
    reader = Reader(arrays, task)
    measured = Measured(task, reader.holding)
    if not runs:
        return measured
    with reader.holding(runs[:1]):  # a stored run's size, for cutting the blocks before the others are read
        guess = runs[0].shape or ()
    budget = block_bytes
    fanned = helpers is not None and helpers.started and all(r.stored for r in runs)
    at_once = helpers.count if fanned else THREADS
    block_bytes = max(1, budget // (2 * at_once))  # the parts held at once, each with its work arrays
    blocks = seed_blocks(runs, block_bytes, guess)
    block_of = {id(r): i for i, block in enumerate(blocks) for r in block}
    inside: list[list[Wanted]] = [[] for _ in blocks]
    across: list[Wanted] = []
    for w in wanted:
        at = {block_of[id(r)] for r in w.group}
        (inside[at.pop()] if len(at) == 1 else across).append(w)
    batches = list(_batches(across, block_bytes, guess))
    parts = blocks + [[r for w in batch for r in w.group] for batch in batches]
    work = inside + batches
    floors = task == "regression"

    def measure_part(i: int) -> None:
        if floors and i < len(blocks):
            for r in blocks[i]:
                r.row_se = row_ses(r)
        _measure(work[i], measured, block_bytes)

    if fanned:
        left = helpers.measure_parts(parts, work, measured, block_bytes,
                                     floors=[floors and i < len(blocks) for i in range(len(parts))])
        reader.each_held([parts[i] for i in left], lambda j: measure_part(left[j]), 1)
        return measured
    reader.each_held(blocks, measure_part, _threads(blocks, budget, guess))
    reader.each_held(parts[len(blocks):], lambda j: measure_part(len(blocks) + j),
                     _threads(parts[len(blocks):], budget, guess))
    return measured
