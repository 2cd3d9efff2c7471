"""What one process last saw of each run's status, so that late and duplicate Batch notifications cost no
database work when their answer is already known.

Runs only move forward through the status machine (core/status.py), so a status reconcile saw a run in
is a lower bound of where the run is now, however long ago it was seen and whoever moved the run since.
From it, some deliveries' answers are known without asking: a change to a target that no status ahead can
apply from (core/status.never_applies) is a no-op, for instance a late SCHEDULED after the run was seen
running, or any non-conflicting outcome for a run seen ended. Only what could still write goes to the
database: a change that may apply, a terminal conflict to record, or a task retry not yet noted. The runs
store's own transition decides "not applied" from a snapshot by the same rule. The memo is per process and
bounded (least recently used first out); a process that never saw a run, or forgot it, takes the database
path, whose answer is the same."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from arc_reactor.core.status import RunStatus, is_terminal_conflict, never_applies, reachable

DEFAULT_CAPACITY = 10_000  # about 2 MB in all (measured): far more runs than one instance sees change at once


@dataclass(frozen=True, slots=True)
class Seen:
    """A run's status as last seen, and how many of its job's task retries are known to be noted."""

    status: RunStatus
    retries_noted: int


class StatusMemo:
    """A bounded, thread-safe memo of runs' last seen statuses (run id -> Seen)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._runs: OrderedDict[str, Seen] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._runs)

    def remember(self, run_id: str, status: RunStatus, retries_noted: int) -> None:
        """Remember that the database showed the run in `status` with `retries_noted` retries noted. Two
        sightings in a race keep the later status and the larger count: both stay lower bounds."""
        if self._capacity <= 0:
            return
        with self._lock:
            old = self._runs.get(run_id)
            if old is not None:
                if old.status != status and old.status in reachable(status):
                    status = old.status  # seen further along already
                retries_noted = max(retries_noted, old.retries_noted)
            self._runs[run_id] = Seen(status, retries_noted)
            self._runs.move_to_end(run_id)
            while len(self._runs) > self._capacity:
                self._runs.popitem(last=False)

    def settled(self, run_id: str, target: RunStatus, retries: int) -> RunStatus | None:
        """The run's last seen status when applying `target` with `retries` task retries is known to change
        nothing: the change can no longer apply, is no terminal conflict, and brings no new retry. None
        when the database must decide."""
        with self._lock:
            seen = self._runs.get(run_id)
            if seen is None:
                return None
            self._runs.move_to_end(run_id)
        if retries > seen.retries_noted or is_terminal_conflict(seen.status, target):
            return None
        return seen.status if never_applies(seen.status, target) else None
