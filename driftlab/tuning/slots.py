"""What every study storage of driftlab shares: the budget's refusal, the grace, the stale-check pace.

Kept apart from ``storage`` (database and journal) and ``grpc_storage`` (the proxy client)
so that neither imports the other.
"""

from __future__ import annotations

import threading
import time

#: Grace before a silent trial is declared dead, in heartbeat intervals.
GRACE_HEARTBEATS = 3


class NoFreeSlot(Exception):
    """Raised instead of creating a trial beyond the budget (see ``budget``)."""


class StalePacer:
    """Says a stale-trial check is due at most once per ``seconds`` (the first one is)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._next = 0.0
        self._lock = threading.Lock()

    def due(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                return False
            self._next = now + self.seconds
            return True
