"""The run status machine: every writer (functions, hooks, sweeper) goes through this table.

    pending -> submitted -> running -> completed | failed | cancelled
    cancelling from pending/submitted/running; terminal states are final.

Batch may skip intermediate states (a job can go QUEUED -> SUCCEEDED as far as we see), so forward jumps
are allowed: a run may go from pending straight to running or to any terminal state. Nothing moves
backwards and nothing leaves a terminal state; such a request is a no-op, recorded as a conflict.
"""

from __future__ import annotations

import re
from enum import StrEnum


class RunStatus(StrEnum):
    """Status of a run."""

    PENDING = "pending"
    SUBMITTED = "submitted"
    RUNNING = "running"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL: frozenset[RunStatus] = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
ACTIVE: frozenset[RunStatus] = frozenset({RunStatus.SUBMITTED, RunStatus.RUNNING, RunStatus.CANCELLING})

# target -> the statuses a run may be in for the change to apply (its allowed predecessors)
PREDECESSORS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset(),
    RunStatus.SUBMITTED: frozenset({RunStatus.PENDING}),
    RunStatus.RUNNING: frozenset({RunStatus.PENDING, RunStatus.SUBMITTED}),
    RunStatus.CANCELLING: frozenset({RunStatus.PENDING, RunStatus.SUBMITTED, RunStatus.RUNNING}),
    RunStatus.COMPLETED: frozenset(
        {RunStatus.PENDING, RunStatus.SUBMITTED, RunStatus.RUNNING, RunStatus.CANCELLING}
    ),
    RunStatus.FAILED: frozenset(
        {RunStatus.PENDING, RunStatus.SUBMITTED, RunStatus.RUNNING, RunStatus.CANCELLING}
    ),
    RunStatus.CANCELLED: frozenset(
        {RunStatus.PENDING, RunStatus.SUBMITTED, RunStatus.RUNNING, RunStatus.CANCELLING}
    ),
}

# The timestamp column each status stamps when a run enters it.
TIMESTAMP_COLUMN: dict[RunStatus, str] = {
    RunStatus.SUBMITTED: "submitted_at",
    RunStatus.RUNNING: "started_at",
    RunStatus.COMPLETED: "completed_at",
    RunStatus.FAILED: "failed_at",
    RunStatus.CANCELLED: "cancelled_at",
}

# Batch JobStatus.State name -> run status (DESIGN.md "Statuses").
BATCH_STATE_TO_STATUS: dict[str, RunStatus] = {
    "QUEUED": RunStatus.SUBMITTED,
    "SCHEDULED": RunStatus.SUBMITTED,
    "RUNNING": RunStatus.RUNNING,
    "SUCCEEDED": RunStatus.COMPLETED,
    "FAILED": RunStatus.FAILED,
    "CANCELLATION_IN_PROGRESS": RunStatus.CANCELLING,
    "CANCELLED": RunStatus.CANCELLED,
    # DELETION_IN_PROGRESS and STATE_UNSPECIFIED carry no status of their own.
}


def is_terminal(status: RunStatus | str) -> bool:
    """True for completed, failed and cancelled."""
    return RunStatus(status) in TERMINAL


def can_transition(current: RunStatus | str, target: RunStatus | str) -> bool:
    """True when a run in `current` may move to `target`."""
    return RunStatus(current) in PREDECESSORS[RunStatus(target)]


def status_for_batch_state(state_name: str) -> RunStatus | None:
    """Map a Batch job state name (e.g. "RUNNING") to a run status, or None when it carries none."""
    return BATCH_STATE_TO_STATUS.get(state_name)


def reachable(start: RunStatus | str) -> frozenset[RunStatus]:
    """`start` and every status the machine can move a run to from it, in any number of changes."""
    return _REACHABLE[RunStatus(start)]


def never_applies(seen: RunStatus | str, target: RunStatus | str) -> bool:
    """True when a change to `target` cannot apply to a run once seen in `seen`, whatever has happened to
    it since: runs only move forward, and no allowed predecessor of `target` lies ahead of `seen`. A
    status read a moment ago (a snapshot, or one a process remembers) is such a `seen`."""
    return not (_REACHABLE[RunStatus(seen)] & PREDECESSORS[RunStatus(target)])


def _closure(start: RunStatus) -> frozenset[RunStatus]:
    seen, todo = {start}, [start]
    while todo:
        here = todo.pop()
        for target, preds in PREDECESSORS.items():
            if here in preds and target not in seen:
                seen.add(target)
                todo.append(target)
    return frozenset(seen)


_REACHABLE: dict[RunStatus, frozenset[RunStatus]] = {status: _closure(status) for status in RunStatus}


def is_terminal_conflict(current: RunStatus | str, target: RunStatus | str) -> bool:
    """True when a run that already ended is told it ended otherwise: refused (the first terminal state wins)
    and recorded as a conflict with both sides."""
    cur, tgt = RunStatus(current), RunStatus(target)
    return cur in TERMINAL and tgt in TERMINAL and cur != tgt


MAX_ERROR_MESSAGE = 4000
MAX_ERROR_TASK = 500
# C0 and C1 control characters and DEL, except tab and newline: an engine's output can hold anything (a NUL,
# terminal escapes), and what we store is shown to people and passed to programs.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_message(text: str, limit: int = MAX_ERROR_MESSAGE) -> str:
    """Text safe to store and show: control characters (but tab and newline) removed, at most `limit` long."""
    return _CONTROL.sub("", text)[:limit]
