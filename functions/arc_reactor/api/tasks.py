"""GET /runs/{id}/tasks and /diagnosis: the run's task attempts from the ledger (adapters/tasks_repo.py),
in the order first seen, a page at a time (`status`, repeatable or comma-separated, and `process` filter);
and why the run failed (core/diagnosis.py)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from arc_reactor.adapters.tasks_repo import TASK_STATUSES, list_tasks
from arc_reactor.api.auth import require_reader
from arc_reactor.api.http import Call, bad_request, encode_token, json_response
from arc_reactor.api.run_logs import page_params
from arc_reactor.core.cost import attempt_cost, load_prices
from arc_reactor.core.diagnosis import diagnose
from arc_reactor.errors import Problem

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from arc_reactor.core.run_record import RunRecord
    from arc_reactor.settings import Settings

MAX_PAGE_SIZE = 500
MAX_DIAGNOSED = 1000  # failed attempts read to find the first one
DEFAULT_PAGE_SIZE = 100
_KEYS = frozenset({"status", "process", "page_size", "page_token"})
TASK_FIELDS = (
    "task_id", "attempt", "process", "name", "tag", "status", "exit_code", "submitted_at", "started_at",
    "completed_at", "cpus", "memory_bytes", "machine_type", "zone", "spot", "preempted", "native_id",
    "work_dir", "error_tail", "updated_at",
)  # fmt: skip


def task_view(row: dict[str, Any], cost: float | None = None) -> dict[str, Any]:
    """One task attempt as the API shows it, with its cost estimate (core/cost.attempt_cost)."""
    view = {k: row.get(k) for k in TASK_FIELDS}
    view["cost"] = cost
    for key in ("submitted_at", "started_at", "completed_at", "updated_at"):
        when = view[key]
        view[key] = when.isoformat() if when is not None else None
    return view


def _query(call: Call) -> tuple[tuple[str, ...], str | None, int, int | None, str]:
    args = call.request.args
    size, token, problems = page_params(call, _KEYS, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    statuses = tuple(s for raw in args.getlist("status") for s in raw.split(",") if s)
    problems += [
        Problem("query", f"unknown status {s!r}; one of {', '.join(TASK_STATUSES)}", field="status")
        for s in statuses
        if s not in TASK_STATUSES
    ]
    process = args.get("process")
    if process is not None and (not 0 < len(process) <= 256 or "\x00" in process):
        problems.append(Problem("query", "must be 1 to 256 characters, without NUL", field="process"))
    fp = hashlib.sha256(json.dumps([sorted(set(statuses)), process]).encode()).hexdigest()[:16]
    after = None
    if token is not None:
        try:
            after = int(token["after"])
            if token.get("f") != fp:
                problems.append(Problem("query", "was made for other filters", field="page_token"))
        except (ValueError, KeyError, TypeError):
            problems.append(Problem("query", "is not a page token from this API", field="page_token"))
    if problems:
        raise bad_request("the query is invalid", problems)
    return tuple(sorted(set(statuses))), process, size, after, fp


def tasks(call: Call) -> Any:
    """GET /runs/{id}/tasks?status=&process=&page_size=&page_token=."""
    statuses, process, size, after, fp = _query(call)
    run = call.deps.runs.get_run(call.run_id)
    require_reader(call.deps.settings, call.caller, run)
    rows = list_tasks(
        call.deps.engine, run.id, limit=size + 1, after_id=after, statuses=statuses, process=process
    )
    token = None
    if len(rows) > size:
        token = encode_token({"after": rows[size - 1]["id"], "f": fp})
    views = priced_views(call.deps.settings, rows[:size], datetime.now(UTC))
    return json_response({"run_id": run.id, "tasks": views, "next_page_token": token})


def priced_views(settings: Settings, rows: Sequence[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Task attempts as the API shows them, each with its cost estimate (the tasks page, the dashboard)."""
    table = load_prices(settings.price_table)
    return [task_view(r, attempt_cost(r, table, settings.region, settings.batch_spot, now)) for r in rows]


def run_diagnosis(engine: Engine, run: RunRecord) -> dict[str, Any]:
    """Why the run failed (core/diagnosis.py), from its failed task attempts (the API, the dashboard)."""
    failed = list_tasks(engine, run.id, limit=MAX_DIAGNOSED, statuses=("failed",))
    return diagnose(vars(run), failed)


def diagnosis(call: Call) -> Any:
    """GET /runs/{id}/diagnosis: the run's error and its first failed task, with a hint."""
    run = call.deps.runs.get_run(call.run_id)
    require_reader(call.deps.settings, call.caller, run)
    report = run_diagnosis(call.deps.engine, run)
    if report["first_failed_task"] is not None:
        report["first_failed_task"] = {
            k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in report["first_failed_task"].items()
        }
    return json_response(report)
