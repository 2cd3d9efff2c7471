"""A run's `cost` object: the live estimate (core/cost.py) from its task ledger and head job, read in two
statements (the ledger grouped by what prices a task, and the head job's retry notes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from arc_reactor.adapters import runs_repo
from arc_reactor.adapters.billing import BilledCosts
from arc_reactor.adapters.tasks_repo import task_usage, task_usage_of
from arc_reactor.core.cost import HeadUsage, estimate, load_prices
from arc_reactor.core.registry import load_registry
from arc_reactor.core.run_record import RunRecord
from arc_reactor.core.status import is_terminal
from arc_reactor.services.reconcile import RETRY_NOTE
from arc_reactor.settings import Settings


def head_usage(
    engine: Engine, run: RunRecord, now: datetime, retries: list[dict[str, Any]] | None = None
) -> HeadUsage | None:
    """The head job's time: from the run's start to its end (or now), across its attempts; the time up to
    its last infrastructure retry was lost with that attempt (the pipeline's own head_job machine).
    `retries`, the run's retry notes when the caller read them already, else they are read here."""
    if run.started_at is None:
        return None
    spec = load_registry().get(run.pipeline)
    if spec is None:
        return None
    end = run.completed_at or (run.updated_at if is_terminal(run.status) else None) or now
    seconds = max((end - run.started_at).total_seconds(), 0.0)
    if retries is None:
        retries = runs_repo.notes_of(engine, run.id, RETRY_NOTE)
    lost = [r["created_at"] for r in retries if r["created_at"] >= run.started_at]
    wasted = min((max(lost) - run.started_at).total_seconds(), seconds) if lost else 0.0
    preempted = sum(1 for r in retries if (r["detail"] or {}).get("cause") == "spot_preempted")
    return HeadUsage(spec.head_job.machine_type, seconds, wasted, preempted)


def run_cost(
    engine: Engine,
    settings: Settings,
    run: RunRecord,
    now: datetime | None = None,
    billed: BilledCosts | None = None,
) -> dict[str, Any]:
    """{estimate, billed}: billed from the billing export when one is configured, else None."""
    table = load_prices(settings.price_table)
    head = head_usage(engine, run, now or datetime.now(UTC))
    found = estimate(
        task_usage(engine, run.id), head, table, settings.region,
        default_spot=settings.batch_spot, running=not is_terminal(run.status),
    )  # fmt: skip
    charged = billed.billed(run.id, run.created_at) if billed is not None and run.created_at else None
    return {"estimate": found, "billed": charged}


def estimates(
    engine: Engine, settings: Settings, runs: Sequence[RunRecord], now: datetime | None = None
) -> dict[str, dict[str, Any]]:
    """The cost estimate of each of a page of runs (the dashboard's list), by run id, in two statements
    whatever the page's size: the same figures as run_cost's `estimate`."""
    table = load_prices(settings.price_table)
    now = now or datetime.now(UTC)
    ids = [r.id for r in runs]
    usage = task_usage_of(engine, ids)
    started = [r.id for r in runs if r.started_at is not None]
    notes = runs_repo.notes_of_runs(engine, started, RETRY_NOTE)
    return {
        r.id: estimate(
            usage.get(r.id, []),
            head_usage(engine, r, now, notes.get(r.id, [])),
            table,
            settings.region,
            default_spot=settings.batch_spot,
            running=not is_terminal(r.status),
        )
        for r in runs
    }
