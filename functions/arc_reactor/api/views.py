"""The public JSON shapes of runs and events (the OpenAPI document in api/openapi.py describes them)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from arc_reactor.core.labels import label_changes
from arc_reactor.core.progress import normalize
from arc_reactor.core.run_record import RunRecord

RUN_FIELDS = (
    "id",
    "name",
    "pipeline",
    "revision",
    "engine",
    "profile",
    "status",
    "parent_run_id",
    "batch_job_name",
    "work_dir",
    "inputs_uri",
    "results_uri",
    "logs_uri",
    "submitter",
    "labels",
    "batch_labels",
    "params",
    "created_at",
    "updated_at",
    "submitted_at",
    "started_at",
    "completed_at",
    "failed_at",
    "cancelled_at",
    "error_code",
    "error_message",
    "error_task",
    "exit_code",
    "metrics",
    "progress",
    "session_id",
    "upload_failures",
)
# Fields a run view adds to the row's own: derived, not stored.
DERIVED_FIELDS = ("is_recovery", "labels_changed")
SUMMARY_FIELDS = ("id", "name", "pipeline", "revision", "status", "submitter", "created_at", "updated_at")
EVENT_FIELDS = ("id", "run_id", "created_at", "kind", "source", "from_status", "to_status", "detail")


def run_view(row: RunRecord) -> dict[str, Any]:
    """A run as the API shows it."""
    # A page holds up to a hundred runs: read the record's attributes directly.
    columns: Mapping[str, Any] = vars(row) if isinstance(row, RunRecord) else row
    view = {k: columns.get(k) for k in RUN_FIELDS}
    view["is_recovery"] = bool(row.get("is_recovery"))
    view["labels"] = view["labels"] or {}
    view["batch_labels"] = view["batch_labels"] or {}
    view["labels_changed"] = label_changes(view["labels"])
    view["params"] = view["params"] or {}
    if view["progress"]:
        view["progress"] = progress_counts(view["progress"])
    return view


def progress_counts(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored progress document as the API shows it: every count (core/progress.py) and when the
    engine reported it (`at`)."""
    processes = doc.get("processes")
    view = normalize(str(doc.get("source") or ""), doc, processes if isinstance(processes, list) else [])
    instant = doc.get("instant")
    if isinstance(instant, int) and not isinstance(instant, bool) and 0 < instant < 10**14:
        view["at"] = datetime.fromtimestamp(instant / 1000, UTC).isoformat()
    else:
        view["at"] = None
    return view


def progress_view(run_id: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    """A run's progress as its SSE stream sends it."""
    return {"run_id": run_id, **progress_counts(doc)}


def locations(row: RunRecord) -> dict[str, Any]:
    """Where a run's files are: inputs, results and logs (permanent), work dir and resume cache."""
    return {
        "inputs": row.get("inputs_uri"),
        "results": row.get("results_uri"),
        "logs": row.get("logs_uri"),
        "work_dir": row.get("work_dir"),
        "cache_dir": row.get("cache_dir"),
    }


def summary_view(row: RunRecord) -> dict[str, Any]:
    """The few fields that identify a related run (parent, children)."""
    return {k: row.get(k) for k in SUMMARY_FIELDS}


def event_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """One run_events row."""
    view = {k: row.get(k) for k in EVENT_FIELDS}
    view["detail"] = view["detail"] or {}
    return view
