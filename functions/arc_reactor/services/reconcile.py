"""Reconcile: bring a run in line with its Batch job.

A notification is only a hint that something changed: Batch may skip states and Pub/Sub delivers at least
once and in any order, so we read the job itself (GetJob) and apply what it says now through the status
machine. A late or duplicated notification therefore re-applies the current truth, which is a no-op."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from arc_reactor.adapters import runs_repo
from arc_reactor.core.events import PubSubMessage, event_age_seconds
from arc_reactor.core.ids import run_id_from_job
from arc_reactor.core.status import RunStatus
from arc_reactor.errors import BatchJobNotFoundError, NotFound
from arc_reactor.services.deps import Deps

if TYPE_CHECKING:
    from arc_reactor.adapters.batch import JobStatus

log = logging.getLogger(__name__)

NOTIFICATION_TYPES = frozenset({"JOB_STATE_CHANGED", "TASK_STATE_CHANGED"})


@dataclass(frozen=True)
class ReconcileResult:
    """What reconciling did."""

    outcome: str  # applied | unchanged | ignored | job_missing
    run_id: str | None = None
    status: str | None = None


def handle_batch_notification(deps: Deps, msg: PubSubMessage, now: datetime | None = None) -> ReconcileResult:
    """Handle one Batch Pub/Sub notification: read the job it names and apply the job's state to the run."""
    attrs = msg.attributes
    if attrs.get("Type") not in NOTIFICATION_TYPES:
        return ReconcileResult("ignored")
    job_ref = attrs.get("JobName", "")
    run_id = run_id_from_job(job_ref)
    if run_id is None:
        return ReconcileResult("ignored")  # not one of our jobs (task jobs Nextflow launched, other tools)
    age = event_age_seconds(msg.publish_time, now)
    if age > deps.settings.max_event_age_seconds:
        log.warning(
            "dropping Batch notification %s: %.0f s old",
            msg.message_id,
            age,
            extra={"run_id": run_id, "event": "event_dropped_stale"},
        )
        return ReconcileResult("ignored", run_id)
    job_name = job_ref if job_ref.startswith("projects/") else deps.batch.job_name(run_id)
    return reconcile_run(deps, run_id, job_name, source="batch", hint=attrs)


def reconcile_run(
    deps: Deps, run_id: str, job_name: str, source: str, hint: dict[str, str] | None = None
) -> ReconcileResult:
    """Read the job and apply its state to the run (also used by the sweeper)."""
    try:
        job = deps.batch.get_job(job_name)
    except BatchJobNotFoundError:
        return _job_missing(deps, run_id, job_name, source)
    target = job.run_status
    if target is None:
        return ReconcileResult("unchanged", run_id)
    fields, detail = _outcome_fields(job)
    if hint:
        detail["notification"] = {k: hint[k] for k in ("Type", "NewJobState", "NewTaskState") if k in hint}
    try:
        res = runs_repo.transition(deps.engine, run_id, target, source, fields=fields, detail=detail)
    except NotFound:
        log.warning("Batch job %s has no run in the database", job_name, extra={"job_name": job_name})
        return ReconcileResult("ignored", run_id)
    if res.applied:
        log.info(
            "run %s %s -> %s (Batch %s)",
            run_id,
            res.previous,
            target.value,
            job.state,
            extra={
                "run_id": run_id,
                "event": "status_changed",
                "source": source,
                "from_status": str(res.previous),
                "to_status": target.value,
            },
        )
        return ReconcileResult("applied", run_id, target.value)
    return ReconcileResult("unchanged", run_id, res.current.value)


def _outcome_fields(job: JobStatus) -> tuple[dict[str, Any], dict[str, Any]]:
    """Error fields for a failed job, and the audit detail."""
    detail: dict[str, Any] = {"batch_state": job.state}
    fields: dict[str, Any] = {}
    if job.run_status == RunStatus.FAILED:
        exit_code = job.exit_codes[-1] if job.exit_codes else None
        fields["error_code"] = job.failure or "pipeline_error"
        fields["exit_code"] = exit_code
        last = job.events[-1].description if job.events else ""
        fields["error_message"] = (last or f"Batch job {job.state}")[:4000]
        detail["failure"] = job.failure
    return fields, detail


def _job_missing(deps: Deps, run_id: str, job_name: str, source: str) -> ReconcileResult:
    """The job is gone: a run still waiting on it can never finish, so fail it with job_missing."""
    try:
        res = runs_repo.transition(
            deps.engine,
            run_id,
            RunStatus.FAILED,
            source,
            fields={"error_code": "job_missing", "error_message": f"Batch job {job_name} no longer exists"},
            detail={"batch_job_name": job_name},
        )
    except NotFound:
        return ReconcileResult("ignored", run_id)
    if res.applied:
        log.error(
            "run %s failed: Batch job %s is missing",
            run_id,
            job_name,
            extra={"run_id": run_id, "event": "job_missing", "error_code": "job_missing"},
        )
    return ReconcileResult("job_missing", run_id, res.current.value)
