"""How long one run may take before its worker is stopped and the run recorded as failed.

``model.run_timeout_s`` sets it. Unset, it is derived: before any run of the stage has
finished, ``BASE_S + PER_EPOCH_S × epochs`` (generous: a first run also traces the
model); once runs have finished, ``SLOWER_THAN_SEEN ×`` the slowest of them, never
below ``FLOOR_S`` and never above the first bound. A builder that hangs therefore costs
at most the first bound once, and much less after the stage has seen real runs.
"""

from __future__ import annotations

import threading

BASE_S = 600.0
PER_EPOCH_S = 60.0
SLOWER_THAN_SEEN = 10.0
FLOOR_S = 300.0


class RunTimeout:
    """The time limit of the next run; thread-safe (the executor's worker threads share one)."""

    def __init__(self, configured_s: float | None, epochs: int):
        self.configured_s = configured_s
        self.initial_s = BASE_S + PER_EPOCH_S * max(1, int(epochs))
        self.slowest_s = 0.0
        self._lock = threading.Lock()

    def seconds(self) -> float:
        """The limit for a run starting now."""
        if self.configured_s is not None:
            return float(self.configured_s)
        with self._lock:
            if self.slowest_s <= 0:
                return self.initial_s
            return min(self.initial_s, max(FLOOR_S, SLOWER_THAN_SEEN * self.slowest_s))

    def observe(self, seconds: float) -> None:
        """A run finished (in any state but timed out) after ``seconds``."""
        with self._lock:
            self.slowest_s = max(self.slowest_s, float(seconds))

    def explain(self, seconds: float) -> str:
        """Why a run was stopped, and what to do about it."""
        if self.configured_s is not None:
            origin = "model.run_timeout_s"
        elif self.slowest_s > 0:
            origin = f"{SLOWER_THAN_SEEN:g}× the slowest run so far ({self.slowest_s:.1f} s); set model.run_timeout_s"
        else:
            origin = f"the default for {int((self.initial_s - BASE_S) / PER_EPOCH_S)} epoch(s); set model.run_timeout_s"
        return (f"run timed out after {seconds:.0f} s ({origin}); its worker was stopped and replaced. "
                "If the builder or training hangs, fix it; if runs are just slow, raise model.run_timeout_s")
