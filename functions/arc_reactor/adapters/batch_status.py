"""Reading a Batch Job proto: its state, the mapped run status, status events, task exit codes, the failure
classification and the task retries it shows. Pure: no RPC happens here (adapters/batch.py makes them).

Exit codes come from the task events' `task_execution.exit_code` when Batch fills it, else from the event
texts ("... with exit code 50001."), which is where real jobs.get often carries them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from arc_reactor.core.batch_policy import (
    MAX_RETRY_COUNT,
    ORCHESTRATOR_RETRIED_EXIT_CODES,
    RESERVED_EXIT_CODES,
)
from arc_reactor.core.status import RunStatus, status_for_batch_state

if TYPE_CHECKING:
    from google.cloud import batch_v1

TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
PIPELINE_ERROR = "pipeline_error"
_EXIT_CODE_RE = re.compile(r"with exit code (-?\d+)")
_NEW_STATE_RE = re.compile(r"\bfrom ([A-Z_]+) to ([A-Z_]+)")


@dataclass(frozen=True)
class StatusEvent:
    """One Batch status event; new_state is the state named after "to" in its description, if any."""

    type: str
    description: str
    time: datetime | None
    new_state: str | None
    exit_code: int | None = None


@dataclass(frozen=True)
class TaskRetry:
    """A task attempt that ended on an infrastructure exit code and was retried as attempt `attempt`."""

    attempt: int  # the new attempt's BATCH_TASK_RETRY_ATTEMPT (1 for the first retry)
    exit_code: int
    cause: str  # spot_preempted, vm_lost, ...


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

    @property
    def retries(self) -> list[TaskRetry]:
        """The task retries this job shows (see `task_retries`)."""
        return task_retries(self.state, self.exit_codes)


def classify_failure(state: str, exit_codes: list[int]) -> str | None:
    """For a FAILED job: a Batch-reserved cause (spot_preempted, vm_lost, ...) or pipeline_error."""
    if state != "FAILED":
        return None
    last = next((code for code in reversed(exit_codes) if code != 0), None)
    if last is None:
        return None
    return RESERVED_EXIT_CODES.get(last, PIPELINE_ERROR)


def task_retries(state: str, exit_codes: list[int]) -> list[TaskRetry]:
    """Ended attempts that Batch retried: an infrastructure code within max_retry_count, and not the final
    attempt of a finished job (a pipeline's own exit code is never retried: jobspec's lifecycle policy)."""
    ended = exit_codes[:-1] if state in TERMINAL_STATES else exit_codes
    return [
        TaskRetry(attempt=i + 1, exit_code=code, cause=RESERVED_EXIT_CODES.get(code, PIPELINE_ERROR))
        for i, code in enumerate(ended)
        if code in ORCHESTRATOR_RETRIED_EXIT_CODES and i < MAX_RETRY_COUNT
    ]


def _time(pb: Any, field: str) -> datetime | None:
    """A Timestamp field of a raw protobuf message as an aware datetime, None when unset."""
    return getattr(pb, field).ToDatetime(tzinfo=UTC) if pb.HasField(field) else None


def _event(ev: Any) -> StatusEvent:
    """One StatusEvent from the raw protobuf message (proto-plus wrappers cost more than the fields)."""
    exit_code = int(ev.task_execution.exit_code) if ev.HasField("task_execution") else None
    match = _NEW_STATE_RE.search(ev.description)
    return StatusEvent(
        type=ev.type_,
        description=ev.description,
        time=_time(ev, "event_time"),
        new_state=match.group(2) if match else None,
        exit_code=exit_code,
    )


def _exit_codes(events: list[StatusEvent]) -> list[int]:
    # task_execution is the structured source; fall back to the descriptions when no event has it.
    structured = [e.exit_code for e in events if e.exit_code is not None]
    if structured:
        return structured
    return [int(m.group(1)) for e in events for m in _EXIT_CODE_RE.finditer(e.description)]


def job_status_from_proto(job: batch_v1.Job) -> JobStatus:
    """Read a Job proto into a JobStatus, from its raw protobuf message: reading fields through proto-plus
    was about a tenth of a reconcile (bench/reconcile.py)."""
    from google.cloud import batch_v1

    pb = batch_v1.Job.pb(job)
    state = batch_v1.JobStatus.State(pb.status.state).name
    events = [_event(ev) for ev in pb.status.status_events]
    codes = _exit_codes(events)
    return JobStatus(
        name=pb.name,
        uid=pb.uid,
        state=state,
        run_status=status_for_batch_state(state),
        events=events,
        exit_codes=codes,
        failure=classify_failure(state, codes),
        labels=dict(pb.labels),
        create_time=_time(pb, "create_time"),
    )
