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

from collections.abc import Iterable, Sequence
from dataclasses import fields
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, case, false, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from arc_reactor.adapters.tables import among, run_tasks
from arc_reactor.core.cost import TaskUsage
from arc_reactor.core.tasks import MERGED_FIELDS, TASK_STATUSES, TaskUpdate, merge, rank

__all__ = [
    "TASK_STATUSES", "TaskUpdate", "get_task", "list_tasks", "merge", "rank", "task_counts", "task_usage",
    "upsert_tasks",
]  # fmt: skip


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
    with engine.begin() as conn:
        conn.execute(_upsert(), rows)  # executemany: one multi-row INSERT, its statement compiled once
    return len(rows)


@lru_cache(maxsize=1)
def _upsert() -> Any:
    """The INSERT .. ON CONFLICT of the ledger's rule, built once."""
    stmt = pg_insert(run_tasks)
    new, old = stmt.excluded, run_tasks.c
    ahead = func.arc_task_rank(new.status) >= func.arc_task_rank(old.status)
    further = func.arc_task_rank(new.status) > func.arc_task_rank(old.status)
    assignments: dict[str, Any] = {
        "status": case((further, new.status), else_=old.status),
        "extra": old.extra.op("||")(new.extra),
        "updated_at": func.now(),
    }
    for name in MERGED_FIELDS:
        assignments[name] = case(
            (ahead, func.coalesce(new[name], old[name])), else_=func.coalesce(old[name], new[name])
        )
    return stmt.on_conflict_do_update(constraint="uq_run_tasks_attempt", set_=assignments)


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


def get_task(engine: Engine, run_id: str, task_id: str, attempt: int) -> dict[str, Any] | None:
    """One task attempt of a run, or None."""
    stmt = select(run_tasks).where(
        run_tasks.c.run_id == run_id, run_tasks.c.task_id == task_id, run_tasks.c.attempt == attempt
    )
    with engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    return dict(row) if row is not None else None


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


def task_usage(engine: Engine, run_id: str) -> list[TaskUsage]:
    """The run's task attempts that ran, grouped by what prices them (machine type, zone, Spot, preempted,
    on a VM of their own), with their seconds summed: a running attempt counts until now. One statement."""
    return task_usage_of(engine, [run_id]).get(run_id, [])


def task_usage_of(engine: Engine, run_ids: Sequence[str]) -> dict[str, list[TaskUsage]]:
    """task_usage of several runs (a page of the dashboard's list) in one statement, by run id."""
    t = run_tasks.c
    end = func.coalesce(t.completed_at, case((t.status == "running", func.now()), else_=None))
    seconds = func.coalesce(func.sum(func.greatest(func.extract("epoch", end - t.started_at), 0)), 0)
    keys = (
        t.run_id,
        t.machine_type,
        t.zone,
        t.spot,
        func.coalesce(t.preempted, false()),
        t.native_id.isnot(None),
    )
    stmt = (
        select(*keys, func.count(), seconds)
        .where(among(t.run_id, run_ids), t.started_at.isnot(None), t.status != "cached")
        .group_by(*keys)
    )
    found: dict[str, list[TaskUsage]] = {}
    if not run_ids:
        return found
    with engine.connect() as conn:
        for run_id, machine, zone, spot, preempted, own, n, secs in conn.execute(stmt):
            usage = TaskUsage(machine, zone, spot, bool(preempted), False, bool(own), int(n), float(secs))
            found.setdefault(run_id, []).append(usage)
    return found
