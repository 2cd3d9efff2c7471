"""The one status-change use case. Every writer calls it: submit, reconcile, the sweeper, cancel and the
orchestrator's update_status.py. It owns what every change needs, so no writer can forget a part:

- the transition itself (the run store's `transition`; on PostgreSQL one statement: the conditional UPDATE
  and its run_events row), with the terminal-conflict rule, first terminal state wins, from core/status.py
  `is_terminal_conflict`;
- clean stored text: control characters stripped and messages truncated (core/status.py `clean_message`),
  whatever wrote them (an engine's log line can hold anything);
- the one `status_changed` log line of an applied change (run_id as a label, ERROR with its error_code for
  a failure), which the log-based metrics count (docs/monitoring.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from arc_reactor.adapters.runs_repo import TransitionResult
from arc_reactor.core.status import MAX_ERROR_MESSAGE, MAX_ERROR_TASK, RunStatus, clean_message

if TYPE_CHECKING:
    from arc_reactor.services.run_store import RunStore

log = logging.getLogger("arc_reactor.services.status_change")


def change_status(
    runs: RunStore,
    run_id: str,
    target: RunStatus,
    source: str,
    *,
    why: str = "",
    fields: Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> TransitionResult:
    """Move the run to `target` if the status machine allows it, record it, and log it once when applied.
    NotFound for an unknown run, TransientError when the database is unavailable."""
    clean = clean_fields(fields or {})
    res = runs.transition(run_id, target, source, fields=clean, detail=detail, at=at)
    if res.applied:
        log_status_changed(run_id, res, source, why, clean.get("error_code"))
    return res


def clean_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields with their free text made safe to store and show."""
    out = dict(fields)
    for name, limit in (("error_message", MAX_ERROR_MESSAGE), ("error_task", MAX_ERROR_TASK)):
        if isinstance(out.get(name), str):
            out[name] = clean_message(out[name], limit)
    if isinstance(out.get("error_code"), str):
        out["error_code"] = clean_message(out["error_code"], 64)
    return out


def log_status_changed(
    run_id: str, res: TransitionResult, source: str, why: str = "", error_code: str | None = None
) -> None:
    """The one log line of an applied transition (event status_changed, run_id as a label); a failure is
    logged at ERROR with its error_code, so one log-based metric counts transitions and errors alike."""
    level = logging.ERROR if res.current == RunStatus.FAILED else logging.INFO
    log.log(
        level,
        "run %s %s -> %s%s",
        run_id,
        res.previous.value if res.previous else None,
        res.current.value,
        f" ({why})" if why else "",
        extra={
            "run_id": run_id,
            "event": "status_changed",
            "source": source,
            "from_status": res.previous.value if res.previous else None,
            "to_status": res.current.value,
            "error_code": error_code,
        },
    )
