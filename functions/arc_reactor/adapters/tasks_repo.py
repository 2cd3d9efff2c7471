"""The run_tasks ledger (migration 0009): one row per attempt of each task of a run.

Updates come at least once and in any order (Tower batches and their retries, Snakemake's job events, the
trace file at the end), so every write is an upsert on (run_id, task_id, attempt) that never moves a task
backwards: a status replaces the stored one only when it ranks higher (pending < submitted < running < a
terminal status), so the first terminal status wins; every other field takes the value of the more advanced
of the two updates when it has one, else keeps what is there. A batch is one INSERT .. ON CONFLICT; updates
of the same attempt inside one batch are merged first by the same rule (PostgreSQL refuses to touch a row
twice in one statement).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, case, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from arc_reactor.adapters.tables import run_tasks

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


_MERGED = tuple(f.name for f in fields(TaskUpdate) if f.name not in ("task_id", "attempt", "status", "extra"))


def merge(old: TaskUpdate, new: TaskUpdate) -> TaskUpdate:
    """Two updates of the same attempt as one, by the ledger's rule (the database applies the same)."""
    status = new.status if rank(new.status) > rank(old.status) else old.status  # the first terminal wins
    # Values: the more advanced report's (the later one at the same stage), else what the other has.
    ahead, behind = (new, old) if rank(new.status) >= rank(old.status) else (old, new)
    values = {n: getattr(ahead, n) if getattr(ahead, n) is not None else getattr(behind, n) for n in _MERGED}
    return replace(old, status=status, **values, extra={**behind.extra, **ahead.extra})


def _merged(updates: Iterable[TaskUpdate]) -> list[TaskUpdate]:
    by_key: dict[tuple[str, int], TaskUpdate] = {}
    for update in updates:
        key = (update.task_id, update.attempt)
        by_key[key] = merge(by_key[key], update) if key in by_key else update
    return list(by_key.values())


def upsert_tasks(engine: Engine, run_id: str, updates: Sequence[TaskUpdate]) -> int:
    """Apply a batch of updates to a run's ledger in one statement; the number of attempts written."""
    rows = [
        {"run_id": run_id, **{f.name: getattr(u, f.name) for f in fields(TaskUpdate)}, "extra": dict(u.extra)}
        for u in _merged(updates)
    ]
    if not rows:
        return 0
    stmt = pg_insert(run_tasks).values(rows)
    new, old = stmt.excluded, run_tasks.c
    ahead = func.arc_task_rank(new.status) >= func.arc_task_rank(old.status)
    assignments: dict[str, Any] = {
        "status": case(
            (func.arc_task_rank(new.status) > func.arc_task_rank(old.status), new.status), else_=old.status
        ),
        "extra": old.extra.op("||")(new.extra),
        "updated_at": func.now(),
    }
    for name in _MERGED:
        assignments[name] = case(
            (ahead, func.coalesce(new[name], old[name])), else_=func.coalesce(old[name], new[name])
        )
    stmt = stmt.on_conflict_do_update(constraint="uq_run_tasks_attempt", set_=assignments)
    with engine.begin() as conn:
        conn.execute(stmt)
    return len(rows)


def list_tasks(
    engine: Engine,
    run_id: str,
    *,
    limit: int,
    after_id: int | None = None,
    statuses: Sequence[str] = (),
    process: str | None = None,
) -> list[dict[str, Any]]:
    """A page of a run's task attempts in ledger order (keyset on id), optionally of some statuses or one
    process."""
    stmt = select(run_tasks).where(run_tasks.c.run_id == run_id)
    if statuses:
        stmt = stmt.where(run_tasks.c.status.in_(list(statuses)))
    if process is not None:
        stmt = stmt.where(run_tasks.c.process == process)
    if after_id is not None:
        stmt = stmt.where(run_tasks.c.id > after_id)
    stmt = stmt.order_by(run_tasks.c.id).limit(limit)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def task_counts(engine: Engine, run_id: str) -> dict[str, dict[str, int]]:
    """{process: {status: tasks}} counting each task once, by the status of its latest attempt, and the
    number of retried attempts under "retries"."""
    latest = (
        select(run_tasks.c.process, run_tasks.c.status)
        .where(run_tasks.c.run_id == run_id)
        .distinct(run_tasks.c.task_id)
        .order_by(run_tasks.c.task_id, run_tasks.c.attempt.desc())
        .subquery()
    )
    counts: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for process, status, n in conn.execute(
            select(latest.c.process, latest.c.status, func.count()).group_by(
                latest.c.process, latest.c.status
            )
        ):
            counts.setdefault(process or "", {})[status] = int(n)
        for process, n in conn.execute(
            select(run_tasks.c.process, func.count())
            .where(run_tasks.c.run_id == run_id, run_tasks.c.attempt > 1)
            .group_by(run_tasks.c.process)
        ):
            counts.setdefault(process or "", {})["retries"] = int(n)
    return counts
