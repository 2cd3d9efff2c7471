"""Batch adapter: every google-cloud-batch call of the package lives here.

Errors come out as the package's taxonomy (errors.py): quota and permission refusals are permanent and
never retried; UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, ABORTED and connection errors are retried with
the bounded policy of adapters/retry.py and end as BatchUnavailableError (transient: redelivery).
The client's own per-method retry is switched off (retry=None) so that one policy governs.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from arc_reactor.adapters.retry import retry_call
from arc_reactor.core.ids import job_id_for
from arc_reactor.core.jobspec import OrchestratorJob, create_job_request, parent_for
from arc_reactor.core.status import RunStatus, status_for_batch_state
from arc_reactor.errors import (
    BatchError,
    BatchJobCreationError,
    BatchJobNotFoundError,
    BatchPermissionError,
    BatchQuotaExceededError,
    BatchUnavailableError,
)

if TYPE_CHECKING:
    from google.cloud import batch_v1

    from arc_reactor.settings import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)

RPC_TIMEOUT_S = 20.0  # per call; the retry deadline below bounds the whole operation
RETRY_ATTEMPTS = 5
RETRY_DEADLINE_S = 30.0
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
# Batch-reserved exit codes (https://cloud.google.com/batch/docs/troubleshooting#reserved-exit-codes).
RESERVED_EXIT_CODES: dict[int, str] = {
    50001: "spot_preempted",
    50002: "vm_lost",
    50003: "vm_rebooted",
    50004: "vm_unresponsive",
    50005: "max_runtime_exceeded",
    50006: "vm_recreated",
}
PIPELINE_ERROR = "pipeline_error"
_EXIT_CODE_RE = re.compile(r"with exit code (-?\d+)")
_NEW_STATE_RE = re.compile(r"\bfrom ([A-Z_]+) to ([A-Z_]+)")


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
class StatusEvent:
    """One Batch status event; new_state is the state named after "to" in its description, if any."""

    type: str
    description: str
    time: datetime | None
    new_state: str | None
    exit_code: int | None = None


@dataclass(frozen=True)
class JobStatus:
    """What Batch says about a job, with the mapped run status and a failure classification."""

    name: str
    uid: str
    state: str
    run_status: RunStatus | None
    events: list[StatusEvent]
    exit_codes: list[int]
    failure: str | None
    labels: dict[str, str] = field(default_factory=dict)
    create_time: datetime | None = None

    @property
    def terminal(self) -> bool:
        """True for SUCCEEDED, FAILED and CANCELLED."""
        return self.state in TERMINAL_STATES

    @property
    def exit_code(self) -> int | None:
        """The exit code of the last task attempt, if any is known."""
        return self.exit_codes[-1] if self.exit_codes else None


def classify_failure(state: str, exit_codes: list[int]) -> str | None:
    """For a FAILED job: a Batch-reserved cause (spot_preempted, vm_lost, ...) or pipeline_error."""
    if state != "FAILED":
        return None
    last = next((code for code in reversed(exit_codes) if code != 0), None)
    if last is None:
        return None
    return RESERVED_EXIT_CODES.get(last, PIPELINE_ERROR)


def _event(ev: Any) -> StatusEvent:
    exit_code: int | None = None
    if "task_execution" in ev:
        exit_code = int(ev.task_execution.exit_code)
    match = _NEW_STATE_RE.search(ev.description)
    return StatusEvent(
        type=ev.type_,
        description=ev.description,
        time=ev.event_time,
        new_state=match.group(2) if match else None,
        exit_code=exit_code,
    )


def _exit_codes(events: list[StatusEvent]) -> list[int]:
    # task_execution is the structured source; real jobs.get often carries the code only in the text
    # ("... with exit code 50001."), so fall back to the descriptions when no event has it.
    structured = [e.exit_code for e in events if e.exit_code is not None]
    if structured:
        return structured
    return [int(m.group(1)) for e in events for m in _EXIT_CODE_RE.finditer(e.description)]


def job_status_from_proto(job: batch_v1.Job) -> JobStatus:
    """Read a Job proto into a JobStatus."""
    state = job.status.state.name
    events = [_event(ev) for ev in job.status.status_events]
    codes = _exit_codes(events)
    return JobStatus(
        name=job.name,
        uid=job.uid,
        state=state,
        run_status=status_for_batch_state(state),
        events=events,
        exit_codes=codes,
        failure=classify_failure(state, codes),
        labels=dict(job.labels),
        create_time=job.create_time,
    )


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
    ) -> None:
        self._client = client
        self._settings = settings
        self._sleep = sleep
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
        from google.api_core import exceptions as gexc

        try:
            request = create_job_request(spec, self._settings)
        except ValueError as exc:  # a spec or deployment setting Batch must never see: permanent
            raise BatchJobCreationError(f"run {spec.run_id}: {exc}") from exc
        name = f"{request.parent}/jobs/{request.job_id}"
        try:
            job = self._call(
                lambda: self._client.create_job(request=request, retry=None, timeout=RPC_TIMEOUT_S)
            )
        except gexc.AlreadyExists:
            log.info("batch job already exists", extra={"run_id": spec.run_id, "job_name": name})
            return self.get_job(name).name or name
        except Exception as exc:
            err = _translate(exc, f"create {name}", creating=True)
            log.error("batch job creation failed: %s", err, extra={"run_id": spec.run_id, "job_name": name})
            raise err from exc
        log.info("batch job created", extra={"run_id": spec.run_id, "job_name": job.name})
        return job.name or name

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
        """Jobs under the parent matching an AIP-160 `filter` (`labels.run-id="r..."`), at most `limit`."""
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
        """Ask Batch to cancel the job. True when cancelling, or when the job is gone or already finished;
        False when Batch refuses although the job still runs."""
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
        except Exception as exc:
            raise _translate(exc, f"cancel {name}") from exc
        log.info("batch job cancellation requested", extra={"job_name": name})
        return True

    def _cancel_refused(self, name: str, exc: Exception) -> bool:
        # Batch refuses to cancel a job that has already finished: for us that is nothing to do.
        try:
            state = self.get_job(name).state
        except BatchJobNotFoundError:
            return True
        if state in TERMINAL_STATES or state in {"CANCELLATION_IN_PROGRESS", "DELETION_IN_PROGRESS"}:
            return True
        log.warning("batch refused to cancel %s in state %s: %s", name, state, exc, extra={"job_name": name})
        return False

    def poll_job_until_terminal(
        self, job_name: str, interval: float = 10.0, timeout: float = 3600.0
    ) -> JobStatus:
        """Read the job every `interval` s until it is terminal; TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.get_job(job_name)
            if status.terminal:
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{job_name} still {status.state} after {timeout:.0f} s")
            self._sleep(min(interval, remaining))
