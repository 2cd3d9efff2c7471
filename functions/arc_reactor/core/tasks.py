"""Task attempts as the ledger records them (pure): the statuses and their order, one report about one
attempt (TaskUpdate), and how two reports about the same attempt combine (merge), which is the rule
adapters/tasks_repo.py applies in the database too: a status never moves backwards and the first terminal
status wins; other fields come from the more advanced report that has them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

TASK_STATUSES = ("pending", "submitted", "running", "succeeded", "cached", "failed", "aborted")
TERMINAL_TASK_STATUSES = frozenset({"succeeded", "cached", "failed", "aborted"})
_RANK = {"pending": 0, "submitted": 1, "running": 2, **dict.fromkeys(TERMINAL_TASK_STATUSES, 3)}


def rank(status: str) -> int:
    """How far a status is along a task's life (the database's arc_task_rank)."""
    return _RANK.get(status, -1)


@dataclass(frozen=True)
class TaskUpdate:
    """What one report says about one attempt of one task; None means "not said"."""

    task_id: str
    status: str
    attempt: int = 1
    process: str | None = None
    name: str | None = None
    tag: str | None = None
    exit_code: int | None = None
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    cpus: int | None = None
    memory_bytes: int | None = None
    machine_type: str | None = None
    zone: str | None = None
    spot: bool | None = None
    preempted: bool | None = None
    native_id: str | None = None
    work_dir: str | None = None
    error_tail: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in _RANK:
            raise ValueError(f"unknown task status {self.status!r}; one of {', '.join(TASK_STATUSES)}")


MERGED_FIELDS = tuple(
    f.name for f in fields(TaskUpdate) if f.name not in ("task_id", "attempt", "status", "extra")
)


def merge(old: TaskUpdate, new: TaskUpdate) -> TaskUpdate:
    """Two updates of the same attempt as one, by the ledger's rule (the database applies the same)."""
    status = new.status if rank(new.status) > rank(old.status) else old.status  # the first terminal wins
    # Values: the more advanced report's (the later one at the same stage), else what the other has.
    ahead, behind = (new, old) if rank(new.status) >= rank(old.status) else (old, new)
    values = {
        n: getattr(ahead, n) if getattr(ahead, n) is not None else getattr(behind, n) for n in MERGED_FIELDS
    }
    return replace(old, status=status, **values, extra={**behind.extra, **ahead.extra})
