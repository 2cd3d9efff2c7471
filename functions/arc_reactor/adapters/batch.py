"""Batch adapter: every google-cloud-batch call of the package lives here.

Errors come out as the package's taxonomy (errors.py): quota and permission refusals of CreateJob are
permanent and never retried; UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, ABORTED and connection errors are
retried with the bounded policy of adapters/retry.py and end as BatchUnavailableError (transient:
redelivery). RESOURCE_EXHAUSTED on a read or a cancel is the API's request-rate quota, not a resource
quota, so it is transient too (not retried here: Eventarc's backoff is the gentler retry).
The client's own per-method retry is switched off (retry=None) so that one policy governs. A refused
create leaves no job behind: a job of that name that a raced create made is cancelled at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from arc_reactor.adapters.batch_status import (
    PIPELINE_ERROR,
    TERMINAL_STATES,
    JobStatus,
    StatusEvent,
    TaskRetry,
    classify_failure,
    job_status_from_proto,
)
from arc_reactor.adapters.retry import retry_call
from arc_reactor.core.batch_policy import RESERVED_EXIT_CODES
from arc_reactor.core.ids import job_id_for, job_id_of, run_id_from_job
from arc_reactor.core.jobspec import OrchestratorJob, create_job_request, parent_for
from arc_reactor.core.labels import run_label_filter
from arc_reactor.errors import (
    BatchError,
    BatchJobCreationError,
    BatchJobNotFoundError,
    BatchPermissionError,
    BatchQuotaExceededError,
    BatchUnavailableError,
    PermanentError,
)

if TYPE_CHECKING:
    from google.cloud import batch_v1

    from arc_reactor.settings import Settings

__all__ = [
    "PIPELINE_ERROR",
    "RESERVED_EXIT_CODES",
    "TERMINAL_STATES",
    "BatchService",
    "CancelSummary",
    "JobStatus",
    "StatusEvent",
    "TaskRetry",
    "classify_failure",
    "job_status_from_proto",
    "make_batch_client",
]

T = TypeVar("T")
log = logging.getLogger(__name__)

RPC_TIMEOUT_S = 20.0  # per call; the retry deadline below bounds the whole operation
RETRY_ATTEMPTS = 5
RETRY_DEADLINE_S = 30.0
# cancel_run_jobs: at most this many task jobs per call, and no new cancel once the deadline has passed.
MAX_TASK_JOBS = 1000
CANCEL_DEADLINE_S = 60.0
# Jobs that still hold or may start VMs; CANCELLATION_IN_PROGRESS and DELETION_IN_PROGRESS are going away.
ACTIVE_JOBS_FILTER = '(status.state="QUEUED" OR status.state="SCHEDULED" OR status.state="RUNNING")'


def make_batch_client(settings: Settings) -> batch_v1.BatchServiceClient:
    """A Batch client: over an insecure channel to settings.batch_endpoint (local), else Google's API."""
    from google.cloud import batch_v1

    if settings.batch_endpoint:
        import grpc
        from google.cloud.batch_v1.services.batch_service.transports import BatchServiceGrpcTransport

        # An explicit channel makes the transport skip credential lookup entirely (no google.auth.default).
        transport = BatchServiceGrpcTransport(channel=grpc.insecure_channel(settings.batch_endpoint))
        return batch_v1.BatchServiceClient(transport=transport)
    return batch_v1.BatchServiceClient()


@dataclass(frozen=True)
class CancelSummary:
    """What cancelling a run's Batch jobs did; `failures` says, per job, why it may still be running."""

    orchestrator_cancelled: bool
    task_jobs_cancelled: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every job of the run is cancelled, gone or finished."""
        return self.orchestrator_cancelled and not self.failures


@dataclass(frozen=True)
class CreatedJob:
    """A run's orchestrator job as Batch created it."""

    name: str
    uid: str | None


def _transient() -> tuple[type[BaseException], ...]:
    from google.api_core import exceptions as gexc

    return (
        gexc.ServiceUnavailable,
        gexc.DeadlineExceeded,
        gexc.InternalServerError,
        gexc.Aborted,
        ConnectionError,
        TimeoutError,
    )


def _translate(exc: Exception, what: str, *, creating: bool = False) -> Exception:
    """The package error for a Batch SDK error (the original is chained by the caller)."""
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.NotFound):
        return BatchJobNotFoundError(f"{what}: not found")
    if isinstance(exc, gexc.ResourceExhausted):
        if not creating:  # request-rate quota on reads and cancels: it refills, so try again later
            return BatchUnavailableError(f"{what}: Batch request quota exhausted: {exc.message}")
        return BatchQuotaExceededError(f"{what}: quota exceeded: {exc.message}")
    if isinstance(exc, gexc.PermissionDenied | gexc.Unauthenticated):
        return BatchPermissionError(f"{what}: permission denied: {exc.message}")
    if isinstance(exc, _transient()):
        return BatchUnavailableError(f"{what}: Batch unavailable: {exc}")
    if creating and isinstance(exc, gexc.InvalidArgument | gexc.FailedPrecondition | gexc.OutOfRange):
        return BatchJobCreationError(f"{what}: Batch refused the job: {exc.message}")
    return BatchError(f"{what}: {exc}")


class BatchService:
    """Submit, read, list and cancel Batch jobs; one instance per client, safe to share."""

    def __init__(
        self,
        client: batch_v1.BatchServiceClient,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._settings = settings
        self._sleep = sleep
        self._clock = clock
        self._parent = parent_for(settings)

    def _call(self, fn: Callable[[], T]) -> T:
        return retry_call(
            fn, attempts=RETRY_ATTEMPTS, deadline=RETRY_DEADLINE_S, retry_on=_transient(), sleep=self._sleep
        )

    def job_name(self, run_id: str) -> str:
        """projects/{p}/locations/{r}/jobs/arc-<run_id>."""
        return f"{self._parent}/jobs/{job_id_for(run_id)}"

    def _full_name(self, job_name: str) -> str:
        # Notifications and humans sometimes give a bare job id; Batch RPCs need the resource name.
        return job_name if "/" in job_name else f"{self._parent}/jobs/{job_name}"

    def submit_orchestrator_job(self, spec: OrchestratorJob) -> str:
        """Create the run's orchestrator job and return its name; an existing job of that id is success."""
        return self.create_orchestrator_job(spec).name

    def create_orchestrator_job(self, spec: OrchestratorJob) -> CreatedJob:
        """Create the run's orchestrator job; an existing job of that id is success. Returns its resource
        name and the uid Batch gave it (task notifications name the job by uid)."""
        try:
            request = create_job_request(spec, self._settings)
        except ValueError as exc:  # a spec or deployment setting Batch must never see: permanent
            raise BatchJobCreationError(f"run {spec.run_id}: {exc}") from exc
        return self.create_job(request, spec.run_id)

    def create_job(self, request: batch_v1.CreateJobRequest, run_id: str) -> CreatedJob:
        """Create the job `request` describes (a run's orchestrator job, or one of an engine's task jobs);
        an existing job of that id is success. A permanent refusal leaves no job of that name behind."""
        from google.api_core import exceptions as gexc

        name = f"{request.parent}/jobs/{request.job_id}"
        ids = {"run_id": run_id, "job_name": name}
        try:
            job = self._call(
                lambda: self._client.create_job(request=request, retry=None, timeout=RPC_TIMEOUT_S)
            )
        except gexc.AlreadyExists:
            log.info("batch job already exists", extra={**ids, "event": "batch_job_exists"})
            existing = self.get_job(name)
            return CreatedJob(existing.name or name, existing.uid or None)
        except Exception as exc:
            err = _translate(exc, f"create {name}", creating=True)
            code = getattr(err, "code", "batch_error")
            log.error(
                "batch job creation failed: %s",
                err,
                extra={**ids, "event": "batch_job_create_failed", "error_code": code},
            )
            if isinstance(err, PermanentError):
                self._discard_raced_job(name)
            raise err from exc
        log.info("batch job created", extra={**ids, "event": "batch_job_created"})
        return CreatedJob(job.name or name, job.uid or None)

    def _discard_raced_job(self, name: str) -> None:
        """After a refused create, leave no job of that name running: an earlier attempt whose answer was
        lost, or a concurrent delivery, may have created it. NOT_FOUND, the usual answer, is success."""
        try:
            self.cancel_job(name)
        except BatchError as exc:
            log.warning(
                "could not cancel %s after its create was refused: %s",
                name,
                exc,
                extra={"job_name": name, "run_id": run_id_from_job(name), "event": "orphan_cleanup_failed"},
            )

    def get_job(self, job_name: str) -> JobStatus:
        """The job's status; BatchJobNotFoundError when it does not exist."""
        return job_status_from_proto(self._get_proto(job_name))

    def get_job_status(self, job_name: str) -> JobStatus:
        """Alias of get_job, with the sprint plan's name."""
        return self.get_job(job_name)

    def _get_proto(self, job_name: str) -> batch_v1.Job:
        from google.cloud import batch_v1

        name = self._full_name(job_name)
        request = batch_v1.GetJobRequest(name=name)
        try:
            return self._call(
                lambda: self._client.get_job(request=request, retry=None, timeout=RPC_TIMEOUT_S)
            )
        except Exception as exc:
            raise _translate(exc, f"get {name}") from exc

    def list_jobs(self, filter: str = "", page_size: int = 100, limit: int = 1000) -> list[JobStatus]:
        """Jobs under the parent matching an AIP-160 `filter` (`labels."run-id"="r..."`), at most `limit`."""
        from google.cloud import batch_v1

        out: list[JobStatus] = []
        token = ""
        while len(out) < limit:
            request = batch_v1.ListJobsRequest(
                parent=self._parent,
                filter=filter,
                page_size=min(page_size, limit - len(out)),
                page_token=token,
            )
            try:
                page = self._call(partial(self._list_page, request))
            except Exception as exc:
                raise _translate(exc, f"list jobs ({filter or 'no filter'})") from exc
            out.extend(job_status_from_proto(job) for job in page.jobs)
            token = page.next_page_token
            if not token:
                break
        return out[:limit]

    def _list_page(self, request: batch_v1.ListJobsRequest) -> batch_v1.ListJobsResponse:
        # The pager's first page is the response already fetched, so this is exactly one RPC.
        pager = self._client.list_jobs(request=request, retry=None, timeout=RPC_TIMEOUT_S)
        return next(iter(pager.pages))

    def cancel_job(self, job_name: str) -> bool:
        """Ask Batch to cancel the job (DeleteJob only where CancelJob is not possible). True when going
        away, or when the job is gone or already finished; False when Batch refuses both."""
        from google.api_core import exceptions as gexc
        from google.cloud import batch_v1

        name = self._full_name(job_name)
        request = batch_v1.CancelJobRequest(name=name)
        try:
            # The returned operation is not waited on: the job's state tells when cancellation is done.
            self._call(lambda: self._client.cancel_job(request=request, retry=None, timeout=RPC_TIMEOUT_S))
        except gexc.NotFound:
            return True
        except gexc.FailedPrecondition as exc:
            return self._cancel_refused(name, exc)
        except gexc.MethodNotImplemented:
            return self._delete(name)
        except Exception as exc:
            raise _translate(exc, f"cancel {name}") from exc
        log.info(
            "batch job cancellation requested",
            extra={"job_name": name, "run_id": run_id_from_job(name), "event": "batch_cancel_requested"},
        )
        return True

    def _cancel_refused(self, name: str, exc: Exception) -> bool:
        # Batch refuses to cancel a job that has already finished: for us that is nothing to do.
        try:
            state = self.get_job(name).state
        except BatchJobNotFoundError:
            return True
        if state in TERMINAL_STATES or state in {"CANCELLATION_IN_PROGRESS", "DELETION_IN_PROGRESS"}:
            return True
        log.warning(
            "batch refused to cancel %s in state %s (%s): deleting it instead",
            name,
            state,
            exc,
            extra={"job_name": name, "run_id": run_id_from_job(name), "event": "batch_cancel_refused"},
        )
        return self._delete(name)

    def _delete(self, name: str) -> bool:
        """DeleteJob: it stops the job's VMs too, but the job's record goes with it."""
        from google.api_core import exceptions as gexc
        from google.cloud import batch_v1

        request = batch_v1.DeleteJobRequest(name=name, reason="Arc Reactor: the job could not be cancelled")
        try:
            self._call(lambda: self._client.delete_job(request=request, retry=None, timeout=RPC_TIMEOUT_S))
        except gexc.NotFound:
            return True
        except gexc.FailedPrecondition as exc:
            log.warning(
                "batch refused to delete %s: %s",
                name,
                exc,
                extra={"job_name": name, "run_id": run_id_from_job(name), "event": "batch_delete_refused"},
            )
            return False
        except Exception as exc:
            raise _translate(exc, f"delete {name}") from exc
        log.info(
            "batch job deleted (cancel was not possible)",
            extra={"job_name": name, "run_id": run_id_from_job(name), "event": "batch_job_deleted"},
        )
        return True

    def cancel_run_jobs(self, run_id: str) -> CancelSummary:
        """Cancel the run's orchestrator job, then every still-active job labelled with its run id (the task
        jobs Nextflow launched: stopping Nextflow does not stop their VMs). Gone or finished jobs count as
        cancelled. Batch errors are reported in `failures`, never raised. Bounded by MAX_TASK_JOBS jobs and
        CANCEL_DEADLINE_S (plus one call's retry deadline); calling again finishes what is left."""
        deadline = self._clock() + CANCEL_DEADLINE_S
        failures: list[str] = []
        orchestrator_ok = self._try_cancel(self.job_name(run_id), failures)
        cancelled = self.cancel_task_jobs(run_id, failures, deadline)
        summary = CancelSummary(orchestrator_ok, cancelled, failures)
        log.log(
            logging.INFO if summary.complete else logging.WARNING,
            "cancelled the Batch jobs of run %s: orchestrator %s, %d task job(s), %d failure(s)",
            run_id,
            "done" if orchestrator_ok else "NOT cancelled",
            len(cancelled),
            len(failures),
            extra={
                "run_id": run_id,
                "event": "run_jobs_cancelled",
                "detail": {"task_jobs": len(cancelled), "failures": failures[:20]},
            },
        )
        return summary

    def cancel_task_jobs(self, run_id: str, failures: list[str], deadline: float | None = None) -> list[str]:
        """Cancel every still-active job labelled with the run's id but its orchestrator job (an engine's
        task jobs); the names cancelled, what went wrong appended to `failures`, never raised. Bounded by
        MAX_TASK_JOBS jobs and `deadline` (this service's clock; default CANCEL_DEADLINE_S from now)."""
        deadline = self._clock() + CANCEL_DEADLINE_S if deadline is None else deadline
        orchestrator = job_id_for(run_id)
        try:
            query = f"{run_label_filter(run_id)} AND {ACTIVE_JOBS_FILTER}"
            found = self.list_jobs(query, limit=MAX_TASK_JOBS + 1)  # one more tells whether any is left
        except BatchError as exc:
            failures.append(f"listing the run's task jobs: {exc}")
            found = []
        if len(found) > MAX_TASK_JOBS:
            failures.append(f"more than {MAX_TASK_JOBS} active jobs: cancel again for the rest")
        # A cancel of the orchestrator still in flight can list it as RUNNING for a moment; and a retried
        # orchestrator cancelling its earlier attempt's task jobs must not cancel itself.
        tasks = [j.name for j in found[:MAX_TASK_JOBS] if job_id_of(j.name) != orchestrator]
        return self.cancel_each(
            tasks,
            failures,
            out_of_time=lambda: self._clock() >= deadline,
            late=f"cancelling ran past {CANCEL_DEADLINE_S:.0f} s",
        )

    def cancel_each(
        self, names: Iterable[str], failures: list[str], *, out_of_time: Callable[[], bool], late: str
    ) -> list[str]:
        """_try_cancel each job in turn, until out_of_time() says to stop (the rest go to `failures` as
        not attempted, `late` saying why); the names cancelled."""
        cancelled: list[str] = []
        for name in names:
            if out_of_time():
                failures.append(f"{name}: not attempted, {late}")
            elif self._try_cancel(name, failures):
                cancelled.append(name)
        return cancelled

    def _try_cancel(self, name: str, failures: list[str]) -> bool:
        """cancel_job, with what went wrong appended to `failures` rather than raised."""
        try:
            if self.cancel_job(name):
                return True
            failures.append(f"{name}: Batch refused to cancel it")
        except BatchError as exc:
            failures.append(f"{name}: {exc}")
        return False

    def poll_job_until_terminal(
        self, job_name: str, interval: float = 10.0, timeout: float = 3600.0
    ) -> JobStatus:
        """Read the job every `interval` s until it is terminal; TimeoutError after `timeout` s."""
        deadline = self._clock() + timeout
        while True:
            status = self.get_job(job_name)
            if status.terminal:
                return status
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise TimeoutError(f"{job_name} still {status.state} after {timeout:.0f} s")
            self._sleep(min(interval, remaining))
