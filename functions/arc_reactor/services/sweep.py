"""Sweep: runs stuck in pending/submitted/running/cancelling with no recent change are checked against Batch.

A run still pending that long lost its submission (the submit delivery was finally dropped, e.g. Batch was
down past the redelivery window): when Batch has no job for it, its submission is finished from the inputs it
already wrote, with the same job id (reconcile's missing-job case, services/submit.py relaunch_pending), or
it fails with a code that says why it cannot be (`submission_incomplete`, `pipeline_not_allowed`).

Notifications can be lost; the sweeper is the safety net. Work per call is bounded: at most
sweep_batch_size runs, and no new check once SWEEP_BUDGET_S has passed (the rest wait for the next call).
The same limits as the job spec apply (core/batch_policy.py): a run QUEUED for over 2 days (Batch's own
limit), or RUNNING for longer than every attempt of its orchestrator job could run (max_run_duration x
attempts), is failed here too, and its jobs (orchestrator and task jobs) are cancelled. A run stuck in
cancelling has its jobs cancelled again.
One run that cannot be checked (Batch or the database unavailable, permission refused) is counted in
`errors` and does not stop the others.

Orphaned jobs: an engine's task jobs (Nextflow's google-batch executor, Snakemake's executor plugin) can
outlive their run when the engine dies without stopping them: VMs that bill until their own time limit
(nextflow-io/nextflow#3847, #4378). Every sweep also lists this deployment's still-active jobs (label
app=arc-reactor, at most ORPHAN_SCAN jobs) and cancels those whose run ended more than ORPHAN_GRACE ago
(the engine's own cleanup has had its chance), with a note on the run. A job whose run id is unknown here is
left alone (another deployment in the same project and region may own it); a run still going keeps its
jobs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from arc_reactor.adapters.batch import ACTIVE_JOBS_FILTER
from arc_reactor.core.batch_policy import LONGEST_RUN, MAX_QUEUED
from arc_reactor.core.labels import APP, label_filter
from arc_reactor.core.run_record import RunRecord
from arc_reactor.core.status import TERMINAL, RunStatus
from arc_reactor.errors import BatchError, TransientError
from arc_reactor.services.reconcile import ReconcileResult, reconcile_run
from arc_reactor.services.status_change import change_status
from arc_reactor.wiring import Deps

log = logging.getLogger(__name__)

# Below the sweeper function's timeout, with room for the check in flight (each Batch call is bounded).
SWEEP_BUDGET_S = 240.0
ORPHAN_SCAN = 500  # active jobs looked at per sweep (Batch lists the oldest first: the longest orphans)
ORPHAN_GRACE = timedelta(minutes=10)  # after its run ended, a job may still be stopping on its own
ORPHAN_NOTE = "orphaned_jobs_cancelled"


@dataclass
class SweepReport:
    """What one sweep looked at and changed."""

    checked: int = 0
    changed: int = 0
    errors: int = 0
    deferred: int = 0  # stale runs left for the next sweep because the time budget ran out
    results: list[ReconcileResult] = field(default_factory=list)
    orphans_cancelled: list[str] = field(default_factory=list)  # jobs of runs that had ended


def sweep(
    deps: Deps,
    now: datetime | None = None,
    *,
    budget_s: float = SWEEP_BUDGET_S,
    clock: Callable[[], float] = time.monotonic,
) -> SweepReport:
    """Reconcile up to sweep_batch_size stale runs, oldest first, within `budget_s` seconds."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(seconds=deps.settings.stale_after_seconds)
    report = SweepReport()
    stop_at = clock() + budget_s
    for run in deps.runs.stale_runs(cutoff, deps.settings.sweep_batch_size):
        if clock() >= stop_at:
            report.deferred += 1
            continue
        report.checked += 1
        run_id = str(run.id)
        job_name = run.batch_job_name or deps.batch.job_name(run_id)
        try:
            result = reconcile_run(deps, run_id, job_name, source="sweeper")
            if result.outcome == "unchanged":
                result = _follow_up(deps, run, now) or result
        except (TransientError, BatchError) as exc:
            report.errors += 1  # the next sweep tries again; one bad run must not stop the others
            log.warning(
                "sweep could not check run %s: %s",
                run_id,
                exc,
                extra={"run_id": run_id, "event": "sweep_error", "error_code": getattr(exc, "code", None)},
            )
            continue
        report.results.append(result)
        report.changed += result.outcome in ("applied", "job_missing")
    if clock() < stop_at:
        _cancel_orphans(deps, now, report, lambda: clock() >= stop_at)
    log.info(
        "sweep checked %d runs, changed %d, cancelled %d orphaned job(s)",
        report.checked,
        report.changed,
        len(report.orphans_cancelled),
        extra={
            "event": "sweep_done",
            "detail": {
                "checked": report.checked,
                "changed": report.changed,
                "errors": report.errors,
                "deferred": report.deferred,
                "orphans_cancelled": len(report.orphans_cancelled),
            },
        },
    )
    return report


def _cancel_orphans(deps: Deps, now: datetime, report: SweepReport, out_of_time: Callable[[], bool]) -> None:
    """Cancel the active jobs of runs that ended more than ORPHAN_GRACE ago (see the module docstring)."""
    try:
        query = f"{label_filter('app', APP)} AND {ACTIVE_JOBS_FILTER}"
        active = deps.batch.list_jobs(query, limit=ORPHAN_SCAN)
        runs = deps.runs.get_runs({j.labels["run-id"] for j in active if j.labels.get("run-id")})
    except (TransientError, BatchError) as exc:
        report.errors += 1
        log.warning("sweep could not look for orphaned jobs: %s", exc, extra={"event": "sweep_error"})
        return
    by_run: dict[str, list[str]] = {}
    for job in active:
        run = runs.get(job.labels.get("run-id", ""))
        if run is None or run.status not in TERMINAL:
            continue
        ended = run.ended_at or run.updated_at
        if ended is not None and now - ended > ORPHAN_GRACE:
            by_run.setdefault(run.id, []).append(job.name)
    for run_id, names in by_run.items():
        failures: list[str] = []
        cancelled = deps.batch.cancel_each(
            names, failures, out_of_time=out_of_time, late="the sweep ran out of time"
        )
        report.orphans_cancelled += cancelled
        report.errors += bool(failures)
        deps.runs.add_note(
            run_id,
            "sweeper",
            {"reason": ORPHAN_NOTE, "cancelled": cancelled[:50], "failures": failures[:20]},
        )
        log.warning(
            "run %s had ended, but %d of its Batch jobs were still active: %d cancelled",
            run_id,
            len(names),
            len(cancelled),
            extra={
                "run_id": run_id,
                "event": "orphaned_jobs_cancelled",
                "detail": {"failures": failures[:20]},
            },
        )


def _follow_up(deps: Deps, row: RunRecord, now: datetime) -> ReconcileResult | None:
    """For a run Batch had no news of: cancel again when it is being cancelled (task jobs launched after the
    first cancel, or a cancel that did not take), else apply Batch's queue and run-time limits."""
    if row.status == RunStatus.CANCELLING:
        deps.batch.cancel_run_jobs(str(row.id))  # bounded; reports its own failures
        return None
    return _enforce_limits(deps, row, now)


def _enforce_limits(deps: Deps, row: RunRecord, now: datetime) -> ReconcileResult | None:
    """Fail runs past Batch's queue limit or past the longest run their orchestrator job allows."""
    status = RunStatus(row.status)
    since = row.started_at if status == RunStatus.RUNNING else row.submitted_at
    limit = LONGEST_RUN if status == RunStatus.RUNNING else MAX_QUEUED
    if not isinstance(since, datetime) or now - since <= limit:
        return None
    code = "max_runtime_exceeded" if status == RunStatus.RUNNING else "queued_too_long"
    run_id = str(row.id)
    res = change_status(
        deps.runs,
        run_id,
        RunStatus.FAILED,
        "sweeper",
        why=f"over the {limit.days}-day limit",
        fields={"error_code": code, "error_message": f"run was {status.value} for over {limit.days} days"},
    )
    if res.applied:
        deps.batch.cancel_run_jobs(run_id)  # reports its own failures; the run is failed either way
    return ReconcileResult("applied" if res.applied else "unchanged", run_id, res.current.value)
