"""Reconcile: bring a run in line with its Batch job.

A notification is only a hint that something changed: Batch may skip states and Pub/Sub delivers at least
once and in any order, so we read the job itself (GetJob) and apply what it says now through the status
machine. A late or duplicated notification therefore re-applies the current truth, which is a no-op.
Both JOB_STATE_CHANGED and TASK_STATE_CHANGED lead to the same GetJob of the run's orchestrator job (a task
message names its job by TaskName and JobUID only: core/ids.py notification_job, and the uid recorded at
creation when the message has no name); a task
attempt that Batch retried (spot preemption and other infrastructure exit codes) becomes one `note` event
per attempt, so users see "preempted, retrying". When two sources disagree on the outcome, the first
terminal state wins and the conflict is recorded with both sides (runs_repo.transition; docs/batch.md).
A delivery whose answer the run's last seen status already settles (a late SCHEDULED for a run seen running,
a duplicate for a run seen ended) skips the database (core/status_memo.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from arc_reactor.core.batch_policy import MAX_RETRY_COUNT
from arc_reactor.core.events import PubSubMessage, event_age_seconds
from arc_reactor.core.ids import notification_job, run_id_from_job
from arc_reactor.core.layout import hook_marker_name
from arc_reactor.core.run_record import RunRecord
from arc_reactor.core.status import RunStatus, is_terminal, is_terminal_conflict
from arc_reactor.errors import BatchJobNotFoundError, NotFound
from arc_reactor.services.status_change import change_status
from arc_reactor.wiring import Deps

if TYPE_CHECKING:
    from arc_reactor.adapters.batch import JobStatus, TaskRetry

log = logging.getLogger(__name__)

NOTIFICATION_TYPES = frozenset({"JOB_STATE_CHANGED", "TASK_STATE_CHANGED"})
RETRY_NOTE = "task_retry"
_CAUSE_TEXT = {
    "spot_preempted": "preempted",
    "vm_lost": "VM lost",
    "vm_rebooted": "VM rebooted",
    "vm_unresponsive": "VM unresponsive",
    "vm_recreated": "VM recreated",
}


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
    job_ref, job_uid = notification_job(attrs)
    age = event_age_seconds(msg.publish_time, now)
    if age > deps.settings.max_event_age_seconds:
        log.warning(
            "dropping Batch notification %s for %s: %.0f s old",
            msg.message_id,
            job_ref or job_uid,
            age,
            extra={"event": "event_dropped_stale"},
        )
        return ReconcileResult("ignored")
    run_id = run_id_from_job(job_ref) if job_ref else None
    if run_id is None and job_ref is None and job_uid:
        run_id = deps.runs.run_id_for_job_uid(job_uid)
    if run_id is None:
        return ReconcileResult("ignored")  # not one of our jobs (task jobs Nextflow launched, other tools)
    # Our own form of the name: a notification's may carry the project number instead of its id.
    return reconcile_run(deps, run_id, deps.batch.job_name(run_id), source="batch", hint=attrs)


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
    if (known := deps.status_memo.settled(run_id, target, len(job.retries))) is not None:
        return ReconcileResult("unchanged", run_id, known.value)  # what the database would answer
    ended = _ended_run(deps, run_id) if target in _READ_RUN_FIRST else None
    if ended is not None:
        if target == RunStatus.CANCELLED and _cancelled_after_end(ended, job):
            return ReconcileResult("unchanged", run_id, ended.status)
        if not job.retries and not is_terminal_conflict(ended.status, target):
            deps.status_memo.remember(run_id, ended.run_status, 0)
            return ReconcileResult("unchanged", run_id, ended.status)  # the transition's answer
    fields, detail = _outcome_fields(job)
    if target == RunStatus.FAILED and ended is None and (left := _hook_outcome(deps, run_id)) is not None:
        fields.update(left)  # the engine's own error, which the hook could not record, beats Batch's
        detail["hook_marker"] = True
    if hint:
        detail["notification"] = {k: hint[k] for k in ("Type", "NewJobState", "NewTaskState") if k in hint}
    try:
        why = f"Batch {job.state}"
        res = change_status(deps.runs, run_id, target, source, why=why, fields=fields, detail=detail)
    except NotFound:
        log.warning(
            "Batch job %s has no run in the database",
            job_name,
            extra={"job_name": job_name, "event": "run_unknown"},
        )
        return ReconcileResult("ignored", run_id)
    if job.retries:
        _note_retries(deps, run_id, job.retries, source)
    deps.status_memo.remember(run_id, res.current, len(job.retries))
    if res.applied:
        return ReconcileResult("applied", run_id, target.value)
    return ReconcileResult("unchanged", run_id, res.current.value)


def _note_retries(deps: Deps, run_id: str, retries: list[TaskRetry], source: str) -> None:
    """One `note` event per retried attempt; attempts already noted (duplicate notifications) are skipped."""
    for retry in retries:
        what = _CAUSE_TEXT.get(retry.cause, retry.cause)
        message = (
            f"{what}, retrying (retry {retry.attempt} of {MAX_RETRY_COUNT}, exit code {retry.exit_code})"
        )
        detail = {
            "reason": RETRY_NOTE,
            "attempt": retry.attempt,
            "exit_code": retry.exit_code,
            "cause": retry.cause,
            "message": message,
        }
        if not deps.runs.add_note_once(run_id, source, f"{RETRY_NOTE}:{retry.attempt}", detail):
            continue
        log.warning(
            "run %s: %s", run_id, message, extra={"run_id": run_id, "event": "task_retried", "detail": detail}
        )


def _outcome_fields(job: JobStatus) -> tuple[dict[str, Any], dict[str, Any]]:
    """Error fields for a failed job, and the audit detail."""
    detail: dict[str, Any] = {"batch_state": job.state}
    fields: dict[str, Any] = {}
    if job.run_status == RunStatus.FAILED:
        exit_code = job.exit_codes[-1] if job.exit_codes else None
        fields["error_code"] = job.failure or "pipeline_error"
        fields["exit_code"] = exit_code
        last = job.events[-1].description if job.events else ""
        fields["error_message"] = last or f"Batch job {job.state}"
        detail["failure"] = job.failure
    return fields, detail


def _finish_submission(deps: Deps, run: RunRecord, source: str) -> ReconcileResult:
    """A pending run without a job: create it now (same id, idempotent) or fail the run saying why not."""
    from arc_reactor.services.submit import relaunch_pending  # submit's imports are heavy: only when needed

    log.warning(
        "run %s was left pending without a Batch job: finishing its submission", run.id,
        extra={"run_id": run.id, "event": "submission_resumed"},
    )  # fmt: skip
    relaunch_pending(deps, run, source)
    return ReconcileResult("applied", run.id, deps.runs.get_run(run.id).status)


_MARKER_FIELDS = frozenset({"error_code", "error_message", "error_task", "exit_code", "session_id"})


# Targets whose handling depends on whether the run has ended: a FAILED job's hook marker is read only for a
# run still going, and a CANCELLED job may have been cancelled after its run ended.
_READ_RUN_FIRST = frozenset({RunStatus.FAILED, RunStatus.CANCELLED})


def _ended_run(deps: Deps, run_id: str) -> RunRecord | None:
    """The run when it has already ended, else None (also for an unknown run: the transition says so).
    For an ended run the transition's answer is known, so a duplicate costs this read alone; and a FAILED
    job's later deliveries do not read the hook's marker (a storage GET is many database reads)."""
    try:
        run = deps.runs.get_run(run_id)
    except NotFound:
        return None
    return run if is_terminal(run.status) else None


def _cancelled_after_end(run: RunRecord, job: JobStatus) -> bool:
    """True when the (ended) run had ended before anyone asked Batch to cancel its job: the sweeper stopping a
    job left running after its run ended (services/sweep.py, orphans), or a person cancelling it by hand.
    That cancel is no other account of how the run ended, so it changes nothing and is no conflict."""
    asked = [
        e.time for e in job.events
        if e.time is not None and e.new_state in ("CANCELLATION_IN_PROGRESS", "CANCELLED")
    ]  # fmt: skip
    ended = run.ended_at
    return bool(asked) and run.run_status != RunStatus.CANCELLED and ended is not None and ended < min(asked)


def _hook_outcome(deps: Deps, run_id: str) -> dict[str, Any] | None:
    """The failure the orchestrator's hook left in the runs bucket when it could not reach the database,
    if any (orchestrator/update_status.py leave_marker); unreadable markers are ignored."""
    doc = deps.storage.read_json_object(deps.settings.runs_bucket, hook_marker_name(run_id), max_bytes=65536)
    if doc is None or doc.get("status") != RunStatus.FAILED.value:
        return None
    fields = doc.get("fields")
    if not isinstance(fields, dict):
        return None
    return {k: v for k, v in fields.items() if k in _MARKER_FIELDS and v is not None}


def _job_missing(deps: Deps, run_id: str, job_name: str, source: str) -> ReconcileResult:
    """The job is gone: a run still pending never got it (its submission was lost), so the submission is
    finished now; a run being cancelled is cancelled (Batch deletes where it cannot cancel); any other run
    still waiting on it can never finish, so it fails with job_missing."""
    try:
        run = deps.runs.get_run(run_id)
        if run.run_status == RunStatus.PENDING:
            return _finish_submission(deps, run, source)
        if run.run_status == RunStatus.CANCELLING:
            target, fields = RunStatus.CANCELLED, {}
        else:
            message = f"Batch job {job_name} no longer exists"
            target, fields = RunStatus.FAILED, {"error_code": "job_missing", "error_message": message}
        detail = {"batch_job_name": job_name, "reason": "job_missing"}
        why = f"Batch job {job_name} is gone"
        res = change_status(deps.runs, run_id, target, source, why=why, fields=fields, detail=detail)
    except NotFound:
        return ReconcileResult("ignored", run_id)
    return ReconcileResult("job_missing", run_id, res.current.value)
