"""Nextflow's trace.txt, as our config has it written (pure): tab-separated, a header row, raw numbers
(`trace.raw = true`: times as epoch milliseconds, durations in milliseconds, memory in bytes) and the fields
TRACE_FIELDS (`trace.fields`). A value Nextflow does not have is `-`.

At the end of a run the orchestrator reads it into the task ledger: it keys attempts as the Tower reports
do (task id and attempt), so a task both reported is one row, and the file fills in what a lost report
missed. Nextflow's TraceFileObserver writes a line when a task completes or is cached, and at the end the
tasks still running (aborted by then)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from arc_reactor.core.tasks import TaskUpdate
from arc_reactor.core.tower import STATUSES, task_exit

TRACE_FIELDS = (
    "task_id", "hash", "native_id", "process", "tag", "name", "status", "exit", "attempt", "submit", "start",
    "complete", "realtime", "cpus", "memory", "workdir",
)  # fmt: skip
NA = "-"
MAX_ROWS = 1_000_000


class TraceFileInvalid(ValueError):
    """A trace file that is not in the form our config asks for."""


def _value(row: dict[str, str], key: str) -> str | None:
    value = row.get(key)
    return None if value in (None, "", NA) else value


def _int(row: dict[str, str], key: str) -> int | None:
    value = _value(row, key)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError as exc:
        raise TraceFileInvalid(f"{key} is not a number: {value!r}") from exc


def _time(row: dict[str, str], key: str) -> datetime | None:
    millis = _int(row, key)
    return datetime.fromtimestamp(millis / 1000, UTC) if millis else None


def parse_trace(text: str) -> list[TaskUpdate]:
    """The ledger updates of a raw trace.txt; TraceFileInvalid when its header is not ours."""
    reader = csv.DictReader(io.StringIO(text), delimiter="\t")
    missing = {"task_id", "status"} - set(reader.fieldnames or ())
    if missing:
        raise TraceFileInvalid(f"not our trace file: no {', '.join(sorted(missing))} column")
    out: list[TaskUpdate] = []
    for n, row in enumerate(reader):
        if n >= MAX_ROWS:
            raise TraceFileInvalid(f"more than {MAX_ROWS} tasks")
        status = STATUSES.get(row.get("status") or "")
        task_id = _value(row, "task_id")
        if status is None or task_id is None:
            continue  # a line Nextflow writes for a status we do not track
        exit_code, preempted = task_exit(status, _int(row, "exit"))
        extra: dict[str, Any] = {k: v for k in ("hash", "realtime") if (v := _value(row, k)) is not None}
        out.append(
            TaskUpdate(
                task_id=task_id, status=status, attempt=_int(row, "attempt") or 1,
                process=_value(row, "process"), name=_value(row, "name"), tag=_value(row, "tag"),
                exit_code=exit_code,
                submitted_at=_time(row, "submit"), started_at=_time(row, "start"),
                completed_at=_time(row, "complete"), cpus=_int(row, "cpus"), memory_bytes=_int(row, "memory"),
                preempted=preempted,
                native_id=_value(row, "native_id"), work_dir=_value(row, "workdir"), extra=extra,
            )
        )  # fmt: skip
    return out
