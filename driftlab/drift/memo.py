"""Groupings listed once per analysis.

``comparisons.wanted_groups`` lists every group the statistics will compare, and each statistic
lists its own groups again from the same runs (``source_groups`` is called 23 times in one
analysis). At 50,000 runs a listing costs up to 0.1 s. Inside :func:`remembering` (``analyze``
holds it), a grouping function decorated with :func:`remembered`, called again with the same runs
list and arguments, returns what it returned the first time: the same lists, which every caller
treats as read-only. Outside it, or in another thread, each call lists anew.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
_cache: ContextVar[dict | None] = ContextVar("driftlab_groupings", default=None)


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def remembered(fn: F) -> F:
    """``fn(runs, ...)`` computed once per runs list and arguments inside :func:`remembering`."""
    @functools.wraps(fn)
    def wrapper(runs: Any, *args: Any, **kwargs: Any) -> Any:
        cache = _cache.get()
        if cache is None:
            return fn(runs, *args, **kwargs)
        key = (fn.__qualname__, id(runs), tuple(map(_frozen, args)),
               tuple(sorted((k, _frozen(v)) for k, v in kwargs.items())))
        hit = cache.get(key)
        if hit is None or hit[0] is not runs:  # the runs list is kept with its value, so its id stays its own
            hit = cache[key] = (runs, fn(runs, *args, **kwargs))
        return hit[1]

    return wrapper  # type: ignore[return-value]


@contextmanager
def remembering() -> Iterator[None]:
    token = _cache.set({})
    try:
        yield
    finally:
        _cache.reset(token)
