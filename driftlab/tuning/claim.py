"""Taking a slot of the budget: one compare-and-set on one WAITING trial, not a read of the study per trial.

Optuna's ``Study.ask`` lists every WAITING trial and tries them in number order. With the
budget's slots queued up front (see ``budget``) that list is the rest of the budget, read
again on every ask, and every worker races for the same first slot. ``SlotStudy`` takes
its slot from a ``SlotClaimer`` instead:

* the WAITING trials are listed once and the list is kept; it is read again only when it
  is used up or one of its slots turns out to be taken (Optuna's cached storages then
  read what is unfinished, not the whole study);
* worker ``i`` of ``W`` (``tuning.workers``) tries the slots whose number is ``i`` modulo
  ``W`` first, lowest number first (its lane), then the others' from the highest number
  down, so two workers seldom try the same slot;
* the claim itself is the storage's compare-and-set WAITING → RUNNING
  (``set_trial_state_values``; ``ResilientRDBStorage.claim_slot`` also records who took
  it in the same transaction, ``SlotJournalStorage.claim_slot`` with the trial's next
  write), so each slot is still taken by exactly one worker.

Every storage that speaks Optuna's ``BaseStorage`` works: PostgreSQL, the journal file,
the gRPC storage proxy, in-memory.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState


def worker_attrs(worker_index: int) -> dict[str, Any]:
    """The user attributes a claimed trial gets: which worker, host and process ran it."""
    return {"worker": worker_index, "host": socket.gethostname(), "pid": os.getpid()}


class SlotClaimer:
    """Takes free slots for one worker (see the module docstring); one per study object."""

    def __init__(self, worker_index: int, lanes: int, attrs: dict[str, Any]) -> None:
        self.lanes = max(1, lanes)
        self.lane = worker_index % self.lanes
        self.attrs = attrs
        self._queue: list[FrozenTrial] = []  # next slot to try last

    def claim(self, study: optuna.Study) -> int | None:
        """Take a WAITING slot: its trial id (now RUNNING, ours), or None when no slot is WAITING."""
        storage = study._storage
        while True:
            if not self._queue:
                waiting = storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,))
                if not waiting:
                    return None
                self._queue = self._order(waiting)
            trial = self._queue.pop()
            if self._take(storage, trial._trial_id):
                return trial._trial_id
            self._queue = []  # another worker took it: the list is stale, read it again

    def _order(self, waiting: list[FrozenTrial]) -> list[FrozenTrial]:
        own = [t for t in waiting if t.number % self.lanes == self.lane]
        others = [t for t in waiting if t.number % self.lanes != self.lane]
        own.sort(key=lambda t: t.number)
        others.sort(key=lambda t: -t.number)
        return (own + others)[::-1]  # popped from the end

    def _take(self, storage: optuna.storages.BaseStorage, trial_id: int) -> bool:
        # driftlab's storages claim in one write; Optuna wraps an RDB storage in its cache (``_backend``).
        claim_slot = getattr(storage, "claim_slot", None) or getattr(getattr(storage, "_backend", None),
                                                                     "claim_slot", None)
        if claim_slot is not None:
            return claim_slot(trial_id, self.attrs)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return False
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        for key, value in self.attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        return True


class SlotStudy(optuna.Study):
    """An ``optuna.Study`` whose ``ask`` takes its trial from a ``SlotClaimer``; same storage, same schema."""

    def __init__(self, *, study_name: str, storage: optuna.storages.BaseStorage, claimer: SlotClaimer,
                 sampler: optuna.samplers.BaseSampler | None = None,
                 pruner: optuna.pruners.BasePruner | None = None) -> None:
        super().__init__(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
        self._claimer = claimer

    def _pop_waiting_trial_id(self) -> int | None:
        # Optuna 5's hook in Study.ask; without a slot ask() creates a trial, which the storages refuse.
        return self._claimer.claim(self)
