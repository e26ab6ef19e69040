"""Progress for people: runs done / total, ETA and the current profile.

On a terminal: a rich bar. In pipelines, logs and tests (quiet mode, or no
terminal): one plain line at the start and about every 10%, with the same
facts, so a KFP log stays short and readable.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, Iterator, TextIO
from driftlab import settings

Advance = Callable[[Any, dict[str, Any]], None]


def quiet_default() -> bool:
    """Quiet unless asked otherwise: DRIFTLAB_QUIET=1 (``driftlab run`` sets it for its tasks)."""
    return settings.QUIET.is_on()


def format_eta(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``42s``; ``?`` before the first run finishes."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class RunCounter:
    """Done / total and an ETA from the runs finished in this session (not the ones skipped)."""

    def __init__(self, total: int, completed: int, clock: Callable[[], float] = time.monotonic):
        self.total, self.done, self.start_done = total, completed, completed
        self.clock = clock
        self.t0 = clock()
        self.t_first: float | None = None
        self.failed = 0

    def advance(self, record: dict[str, Any]) -> None:
        self.done += 1
        if self.t_first is None:
            self.t_first = self.clock()
        if record.get("status") == "failed":
            self.failed += 1

    def eta(self) -> float | None:
        """Seconds left: the pace since the first finished run (worker start-up excluded), once known."""
        trained = self.done - self.start_done
        if trained <= 0 or self.t_first is None:
            return None
        if trained == 1:
            pace = self.t_first - self.t0
        else:
            pace = (self.clock() - self.t_first) / (trained - 1)
        return pace * (self.total - self.done)


@contextlib.contextmanager
def run_progress(total: int, label: str, *, completed: int = 0, quiet: bool = False,
                 stream: TextIO | None = None) -> Iterator[Advance]:
    """Yield ``advance(spec, record)``, to call once per finished run.

    Args:
        total: Runs planned for this stage (or shard) on this profile.
        label: What runs, e.g. ``retrain across seeds · cpu-default``.
        completed: Runs already recorded before this session (resume).
        quiet: Plain lines about every 10% instead of a bar.
        stream: Where to write (default: stderr).
    """
    out = stream or sys.stderr
    counter = RunCounter(total, completed)
    if quiet or quiet_default() or not out.isatty():
        state = {"next": (completed / total if total else 1.0) + 0.1}
        print(f"[driftlab] {label}: {completed}/{total} runs already recorded", file=out, flush=True)

        def advance(spec, record) -> None:
            counter.advance(record)
            if counter.done == total or (total and counter.done / total >= state["next"]):
                state["next"] = counter.done / total + 0.1
                failed = f", {counter.failed} failed" if counter.failed else ""
                print(f"[driftlab] {label}: {counter.done}/{total} runs{failed}, ETA {format_eta(counter.eta())}",
                      file=out, flush=True)

        yield advance
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"),
                  TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[current]}"),
                  console=Console(file=out), transient=False) as bar:
        task = bar.add_task(label, total=total, completed=completed, current="")

        def advance(spec, record) -> None:
            counter.advance(record)
            seeds = f"init {spec.init_seed} shuffle {spec.shuffle_seed} split {spec.split_seed} r{spec.repeat}"
            bar.update(task, advance=1, current=f"{spec.profile_name}: {seeds} {record.get('status', '')}")

        yield advance
