"""Cancel: mark a run cancelling through the status machine, then cancel its Batch jobs (the orchestrator
and every task job labelled with the run id). The run becomes cancelled when Batch reports CANCELLED (the
reconcile function applies it); a run still pending without a job is cancelled at once.

Idempotent: cancelling a cancelling run asks Batch again (finishing what a first call left), and cancelling a
cancelled run answers with the run. A completed or failed run cannot be cancelled (Conflict)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from arc_reactor.core.run_record import RunRecord
from arc_reactor.core.status import TERMINAL, RunStatus
from arc_reactor.errors import Conflict
from arc_reactor.services.status_change import change_status
from arc_reactor.wiring import Deps

if TYPE_CHECKING:
    from arc_reactor.adapters.batch import CancelSummary

log = logging.getLogger(__name__)
SOURCE = "api"


@dataclass(frozen=True)
class CancelResult:
    """The run after the request, what happened, and what Batch said (None when it was not asked)."""

    run: RunRecord
    outcome: Literal["cancelling", "cancelled", "already_cancelled"]
    summary: CancelSummary | None = None


class RunFinished(Conflict):
    """The run already completed or failed (HTTP 409)."""

    code = "run_finished"


def _refuse(run_id: str, status: RunStatus) -> Conflict:
    return RunFinished(f"run {run_id} is {status}: a finished run cannot be cancelled")


def cancel_run(deps: Deps, run_id: str, requested_by: str | None = None) -> CancelResult:
    """Cancel a run (see the module docstring). NotFound for an unknown run, Conflict for a finished one."""
    run = deps.runs.get_run(run_id)
    status = RunStatus(run.status)
    if status == RunStatus.CANCELLED:
        return CancelResult(run, "already_cancelled")
    if status in TERMINAL:
        raise _refuse(run_id, status)
    detail = {"requested_by": requested_by}
    if status == RunStatus.PENDING and not run.batch_job_name:
        res = change_status(
            deps.runs,
            run_id,
            RunStatus.CANCELLED,
            SOURCE,
            why=f"cancelled before its job existed, by {requested_by or 'anonymous'}",
            detail={**detail, "reason": "no Batch job yet"},
        )
        if res.applied:
            # A submission racing with us may have created the job a moment ago: cancel whatever exists.
            summary = deps.batch.cancel_run_jobs(run_id)
            return CancelResult(deps.runs.get_run(run_id), "cancelled", summary)
    why = f"cancel requested by {requested_by or 'anonymous'}"
    res = change_status(deps.runs, run_id, RunStatus.CANCELLING, SOURCE, why=why, detail=detail)
    if not res.applied and res.current == RunStatus.CANCELLED:
        return CancelResult(deps.runs.get_run(run_id), "already_cancelled")
    if not res.applied and res.current in TERMINAL:
        raise _refuse(run_id, res.current)  # it finished while we were asking
    summary = deps.batch.cancel_run_jobs(run_id)
    deps.runs.add_note(
        run_id,
        SOURCE,
        {
            "cancel": {
                "orchestrator_cancelled": summary.orchestrator_cancelled,
                "task_jobs_cancelled": len(summary.task_jobs_cancelled),
                "failures": summary.failures[:20],
            }
        },
    )
    log.info(
        "run %s cancelling (requested by %s)",
        run_id,
        requested_by or "anonymous",
        extra={"run_id": run_id, "event": "run_cancel_requested"},
    )
    return CancelResult(deps.runs.get_run(run_id), "cancelling", summary)
