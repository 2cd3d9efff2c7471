"""What one process knows of runs that have ended, so that late and duplicate Batch notifications for them
cost no database work.

Nothing leaves a terminal status (core/status.py), so "run R ended `failed`" stays true for as long as the
run exists. Once reconcile has applied a job's state to a run and seen the run ended, the status machine's
answer to any later delivery for it is already known: a non-conflicting target changes nothing, so the
transition (and, for a FAILED job, the read that guards the hook's marker) can be skipped. Only what could
still write goes to the database: a terminal conflict, or a task retry not yet noted. The memo is
per process and bounded (least recently used first out): a process that never saw a run ended, or forgot
it, takes the full path, whose answer is the same."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from arc_reactor.core.status import RunStatus, is_terminal, is_terminal_conflict

DEFAULT_CAPACITY = 10_000  # about 2 MB in all (measured): far more runs than end within one instance's life


@dataclass(frozen=True, slots=True)
class EndedRun:
    """A run seen ended: its terminal status and how many of its job's task retries were noted."""

    status: RunStatus
    retries_noted: int


class EndedRuns:
    """A bounded, thread-safe memo of ended runs (run id -> EndedRun)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._runs: OrderedDict[str, EndedRun] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._runs)

    def remember(self, run_id: str, status: RunStatus, retries_noted: int) -> None:
        """Remember a run the database answered as ended (a status not terminal is ignored)."""
        if not is_terminal(status) or self._capacity <= 0:
            return
        with self._lock:
            self._runs[run_id] = EndedRun(status, retries_noted)
            self._runs.move_to_end(run_id)
            while len(self._runs) > self._capacity:
                self._runs.popitem(last=False)

    def settled(self, run_id: str, target: RunStatus, retries: int) -> RunStatus | None:
        """The run's status when applying `target` with `retries` task retries is known to change
        nothing: the run is remembered ended, `target` is no conflict with its end, and no retry is
        new. None when the database must decide."""
        with self._lock:
            known = self._runs.get(run_id)
            if known is None:
                return None
            self._runs.move_to_end(run_id)
        if is_terminal_conflict(known.status, target) or retries > known.retries_noted:
            return None
        return known.status
