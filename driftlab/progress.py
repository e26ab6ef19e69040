"""Progress for people: a rich bar with runs done / total, ETA and the current profile."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator


def _quiet_default() -> bool:
    return os.environ.get("DRIFTLAB_QUIET", "") not in ("", "0")


@contextlib.contextmanager
def run_progress(total: int, label: str, *, completed: int = 0, quiet: bool = False
                 ) -> Iterator[Callable[[Any, dict[str, Any]], None]]:
    """Yield ``advance(spec, record)``; quiet mode prints one line per 10% instead of a bar."""
    if quiet or _quiet_default() or not sys.stderr.isatty():
        state = {"done": completed, "next": 0.1}
        print(f"{label}: {completed}/{total} runs already recorded", file=sys.stderr, flush=True)

        def advance(spec, record) -> None:
            state["done"] += 1
            if total and state["done"] / total >= state["next"] or state["done"] == total:
                state["next"] = state["done"] / total + 0.1
                print(f"{label}: {state['done']}/{total} runs", file=sys.stderr, flush=True)

        yield advance
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("runs"), TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task(label, total=total, completed=completed)

        def advance(spec, record) -> None:
            bar.advance(task)

        yield advance
