"""Sweep: runs stuck in submitted/running/cancelling with no recent change are checked against Batch.

Notifications can be lost; the sweeper is the safety net. Work per call is bounded (sweep_batch_size).
Batch's own limits apply: a job QUEUED for over 2 days or RUNNING for over 14 days is failed here too."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from arc_reactor.adapters import runs_repo
from arc_reactor.core.status import RunStatus
from arc_reactor.errors import TransientError
from arc_reactor.services.deps import Deps
from arc_reactor.services.reconcile import ReconcileResult, reconcile_run

log = logging.getLogger(__name__)

MAX_QUEUED = timedelta(days=2)
MAX_RUNNING = timedelta(days=14)


@dataclass
class SweepReport:
    """What one sweep looked at and changed."""

    checked: int = 0
    changed: int = 0
    errors: int = 0
    results: list[ReconcileResult] = field(default_factory=list)


def sweep(deps: Deps, now: datetime | None = None) -> SweepReport:
    """Reconcile up to sweep_batch_size stale runs, oldest first."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(seconds=deps.settings.stale_after_seconds)
    report = SweepReport()
    for run in runs_repo.stale_runs(deps.engine, cutoff, deps.settings.sweep_batch_size):
        report.checked += 1
        run_id = str(run["id"])
        job_name = run["batch_job_name"] or deps.batch.job_name(run_id)
        try:
            result = reconcile_run(deps, run_id, job_name, source="sweeper")
            if result.outcome == "unchanged":
                result = _enforce_limits(deps, run, now) or result
        except TransientError:
            report.errors += 1  # the next sweep tries again; one bad run must not stop the others
            log.warning(
                "sweep could not check run %s", run_id, extra={"run_id": run_id, "event": "sweep_error"}
            )
            continue
        report.results.append(result)
        report.changed += result.outcome in ("applied", "job_missing")
    log.info(
        "sweep checked %d runs, changed %d",
        report.checked,
        report.changed,
        extra={"event": "sweep_done", "detail": {"checked": report.checked, "changed": report.changed}},
    )
    return report


def _enforce_limits(deps: Deps, row: Mapping[str, Any], now: datetime) -> ReconcileResult | None:
    """Fail runs past Batch's queue (2 days) or run-time (14 days) limits."""
    status = RunStatus(row["status"])
    since = row.get("started_at") if status == RunStatus.RUNNING else row.get("submitted_at")
    limit = MAX_RUNNING if status == RunStatus.RUNNING else MAX_QUEUED
    if not isinstance(since, datetime) or now - since <= limit:
        return None
    code = "max_runtime_exceeded" if status == RunStatus.RUNNING else "queued_too_long"
    res = runs_repo.transition(
        deps.engine,
        str(row["id"]),
        RunStatus.FAILED,
        "sweeper",
        fields={"error_code": code, "error_message": f"run was {status.value} for over {limit.days} days"},
    )
    if res.applied and row.get("batch_job_name"):
        deps.batch.cancel_job(str(row["batch_job_name"]))
    return ReconcileResult("applied" if res.applied else "unchanged", str(row["id"]), res.current.value)
