"""The parts of the local Batch service that hold no server state: list filters, the task retry rule,
the environment a task sees, status event texts, Pub/Sub notification messages shaped like real Batch's,
operations and process-group handling (fault injection is in local/batch_faults.py).

Notification attributes (as Batch publishes them): job-level `Type=JOB_STATE_CHANGED`, `JobName`,
`JobUID`, `NewJobState`, `Region`; task-level `Type=TASK_STATE_CHANGED`, `JobUID`, `TaskName`, `TaskUID`,
`NewTaskState`, `Region`, and no `JobName` (consumers find the job from TaskName or JobUID). A job's uid
is its id plus a generated suffix, as Batch makes them, not a bare uuid. The data is a short human-readable
text, like Batch's ("Job state was updated: jobUID=..., previousState=..., currentState=..., timestamp=...").
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from google.cloud import batch_v1
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2

from arc_reactor.core.ids import JOB_ID_RE

Launcher = Callable[[batch_v1.Job, dict[str, str]], "subprocess.Popen[bytes]"]
KILL_GRACE_S = 5.0
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
GROUP = "group0"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

# One token of a ListJobs filter: a parenthesis, AND/OR, or a `field op value` comparison. Label keys may
# be quoted (`labels."run-id"`), as real Batch filters write keys that hold a `-`.
_TOKEN = re.compile(
    r"\s*(?:(?P<paren>[()])|(?P<conj>(?i:AND|OR))(?=[\s(]|$)|"
    r'(?P<field>labels\.(?:"[^"]+"|[A-Za-z0-9_-]+)|status\.state|name|uid)\s*(?P<op>!=|=|:)\s*'
    r'(?:"(?P<quoted>[^"]*)"|(?P<bare>[^\s()"]+)))'
)


@dataclass(frozen=True)
class Term:
    """One `field op value` comparison of a ListJobs filter (label keys unquoted: `labels.run-id`)."""

    field: str
    op: str
    value: str


Token = str | Term
Clause = tuple[Term, ...]  # alternatives joined by OR


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    pos, text = 0, text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"unsupported filter term at {text[pos:]!r}")
        if match["paren"] or match["conj"]:
            out.append((match["paren"] or match["conj"]).upper())
        else:
            value = match["quoted"] if match["quoted"] is not None else match["bare"]
            op = "=" if match["op"] == ":" else match["op"]
            out.append(Term(match["field"].replace('"', ""), op, value))
        pos = match.end()
    return out


def _clause(tokens: list[Token], i: int) -> tuple[Clause, int]:
    grouped = i < len(tokens) and tokens[i] == "("
    i += grouped
    terms: list[Term] = []
    while True:
        term = tokens[i] if i < len(tokens) else None
        if not isinstance(term, Term):
            raise ValueError(f"unsupported filter: expected a comparison, found {term!r}")
        terms.append(term)
        i += 1
        if i < len(tokens) and tokens[i] == "OR":
            i += 1
            continue
        break
    if grouped:
        if i >= len(tokens) or tokens[i] != ")":
            raise ValueError("unsupported filter: unbalanced parenthesis")
        i += 1
    return tuple(terms), i


def parse_filter(text: str) -> list[Clause]:
    """Parse an AIP-160 subset: comparisons (=, !=, :) joined by OR, optionally in parentheses, and such
    clauses joined by AND (OR binds tighter than AND, as in AIP-160). The result is AND of ORs."""
    tokens, clauses, i = _tokens(text), [], 0
    while i < len(tokens):
        clause, i = _clause(tokens, i)
        clauses.append(clause)
        if i < len(tokens):
            if tokens[i] != "AND" or i + 1 == len(tokens):
                raise ValueError(f"unsupported filter: expected AND before {tokens[i]!r}")
            i += 1
    return clauses


def _field_value(job: batch_v1.Job, name: str) -> str | None:
    if name.startswith("labels."):
        return job.labels.get(name[len("labels.") :])
    if name == "status.state":
        return str(job.status.state.name)
    return str(getattr(job, name))


def _term_holds(job: batch_v1.Job, term: Term) -> bool:
    return (_field_value(job, term.field) == term.value) == (term.op == "=")


def matches(job: batch_v1.Job, clauses: list[Clause]) -> bool:
    """True when the job satisfies every clause (at least one term of each)."""
    return all(any(_term_holds(job, term) for term in clause) for clause in clauses)


def should_retry(spec: batch_v1.TaskSpec, exit_code: int, attempt: int) -> bool:
    """Batch's retry rule for a failed task (LifecyclePolicy docs): within max_retry_count, RETRY_TASK
    retries listed codes only, FAIL_TASK retries all but listed codes, no policy retries any code."""
    if exit_code == 0 or attempt >= spec.max_retry_count:
        return False
    if not spec.lifecycle_policies:
        return True
    policy = spec.lifecycle_policies[0]  # Batch honours one policy per task spec
    listed = exit_code in set(policy.action_condition.exit_codes)
    if policy.action == batch_v1.LifecyclePolicy.Action.FAIL_TASK:
        return not listed
    return listed


def create_problem(request: batch_v1.CreateJobRequest, region: str) -> str | None:
    """Why Batch would refuse this CreateJob with INVALID_ARGUMENT, or None."""
    parent, groups = request.parent, request.job.task_groups
    if not (parent.startswith("projects/") and parent.endswith(f"/locations/{region}")):
        return f"parent must be projects/P/locations/{region}"
    if not JOB_ID_RE.match(request.job_id):
        return f"job_id {request.job_id!r} is not a valid job id"
    if len(groups) != 1 or not groups[0].task_spec.runnables:
        return "a job needs one task group with a runnable"
    if groups[0].task_count > 1:
        return "the local Batch service runs one task per job"
    return None


def _batch_vars(job: batch_v1.Job, attempt: int) -> dict[str, str]:
    return {
        "BATCH_TASK_INDEX": "0",
        "BATCH_TASK_COUNT": "1",
        "BATCH_TASK_RETRY_ATTEMPT": str(attempt),
        "BATCH_JOB_UID": job.uid,
    }


def spec_env(job: batch_v1.Job, attempt: int) -> dict[str, str]:
    """The task-level environment: the task spec's variables plus Batch's own BATCH_* variables (each
    runnable adds its own on top: local/runnables.py)."""
    spec = job.task_groups[0].task_spec
    return {**spec.environments, **spec.environment.variables, **_batch_vars(job, attempt)}


def task_env(job: batch_v1.Job, attempt: int) -> dict[str, str]:
    """What the task's process sees when it is one process for every runnable (the orchestrator's): the
    spec's variables, every runnable's, then Batch's own BATCH_* variables."""
    spec = job.task_groups[0].task_spec
    env: dict[str, str] = {**spec.environments, **spec.environment.variables}
    for runnable in spec.runnables:
        env.update(runnable.environment.variables)
    return {**env, **_batch_vars(job, attempt)}


def project_number(project: str) -> str:
    """The project number the local service gives a project id: 12 digits, the same for the same id (real
    Batch returns resource names with the project's number, whichever form the request used)."""
    if project.isdigit():
        return project
    digest = int.from_bytes(hashlib.sha256(project.encode()).digest()[:8], "big")
    return str(10**11 + digest % (9 * 10**11))


def canonical_name(name: str) -> str:
    """A resource name (`projects/<id or number>/...`) in the form Batch returns: with the project number.
    Requests may name the project either way, as on Batch."""
    head, sep, rest = name.partition("/")
    if head != "projects" or not sep:
        return name
    project, sep, tail = rest.partition("/")
    return f"projects/{project_number(project)}{sep}{tail}"


def new_job_uid(job_id: str) -> str:
    """A uid in Batch's form: the job id (shortened) and a generated suffix."""
    return f"{job_id[:40]}-{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}"


def enum_member(enum: Any, name: str) -> Any:
    """The member of a proto-plus enum called `name` (e.g. JobStatus.State, "RUNNING")."""
    return enum.__members__[name]


def task_name(job: batch_v1.Job) -> str:
    """The resource name of the job's only task."""
    return f"{job.name}/taskGroups/{GROUP}/tasks/0"


def job_event_text(job_name: str, old: str, new: str, cause: str = "") -> str:
    """A job status event description in Batch's words."""
    text = f"Job state is set from {old} to {new} for job {job_name}."
    if cause:
        text += (
            " Job failed due to task failure. Specifically, task with index 0 failed due to the "
            f'following task event: "{cause}"'
        )
    return text


def task_event_text(old: str, new: str, zone: str, instance: str, exit_code: int | None) -> str:
    """A task status event description in Batch's words."""
    text = f"Task state is updated from {old} to {new} on zones/{zone}/instances/{instance}"
    return text + (f" with exit code {exit_code}." if exit_code is not None else ".")


def task_event(description: str, new_task_state: str, exit_code: int | None) -> batch_v1.StatusEvent:
    """A task-level StatusEvent with task_state and (when known) task_execution.exit_code."""
    event = batch_v1.StatusEvent(
        type_="STATUS_CHANGED",
        description=description,
        event_time=datetime.now(UTC),
        task_state=enum_member(batch_v1.TaskStatus.State, new_task_state),
    )
    if exit_code is not None:
        event.task_execution = batch_v1.TaskExecution(exit_code=exit_code)
    return event


def _wanted(job: batch_v1.Job, kind: str, state: str) -> bool:
    for notification in job.notifications:
        msg = notification.message
        if kind == "JOB_STATE_CHANGED":
            type_ok = msg.type_.name == kind or (not msg.type_ and bool(msg.new_job_state))
            state_ok = not msg.new_job_state or msg.new_job_state.name == state
        else:
            type_ok = msg.type_.name == kind or (not msg.type_ and bool(msg.new_task_state))
            state_ok = not msg.new_task_state or msg.new_task_state.name == state
        if notification.pubsub_topic and type_ok and state_ok:
            return True
    return False


def job_notification(
    job: batch_v1.Job, old: str, new: str, region: str
) -> tuple[dict[str, str], bytes] | None:
    """The JOB_STATE_CHANGED message for a change, or None when the job did not ask for it."""
    if not _wanted(job, "JOB_STATE_CHANGED", new):
        return None
    attributes = {
        "Type": "JOB_STATE_CHANGED",
        "JobName": job.name,
        "JobUID": job.uid,
        "NewJobState": new,
        "Region": region,
    }
    data = (
        f"Job state was updated: jobUID={job.uid}, previousState={old}, currentState={new}, "
        f"timestamp={_now()}"
    )
    return attributes, data.encode()


def task_notification(
    job: batch_v1.Job, old: str, new: str, region: str
) -> tuple[dict[str, str], bytes] | None:
    """The TASK_STATE_CHANGED message for task 0, or None when the job did not ask for it."""
    if not _wanted(job, "TASK_STATE_CHANGED", new):
        return None
    task_uid = f"{job.uid}-{GROUP}-0"
    attributes = {  # as Batch publishes them: no JobName on a task message
        "Type": "TASK_STATE_CHANGED",
        "JobUID": job.uid,
        "TaskName": task_name(job),
        "TaskUID": task_uid,
        "NewTaskState": new,
        "Region": region,
    }
    data = (
        f"Task state was updated: taskUID={task_uid}, previousState={old}, currentState={new}, "
        f"timestamp={_now()}"
    )
    return attributes, data.encode()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def set_task_counts(job: batch_v1.Job, counts: Mapping[str, int]) -> None:
    """Record the task group's counts by task state, as Batch's JobStatus.task_groups does."""
    job.status.task_groups[GROUP] = batch_v1.JobStatus.TaskGroupStatus(counts=dict(counts))


def copy_job(job: batch_v1.Job) -> batch_v1.Job:
    """A deep copy, so callers never share a stored job with the threads that change it."""
    return cast(batch_v1.Job, batch_v1.Job.deserialize(batch_v1.Job.serialize(job)))


def exit_code_of(returncode: int) -> int:
    """A process's exit code as Batch reports it; killed by signal N reads as 128 + N, like a shell."""
    return 128 - returncode if returncode < 0 else returncode


def new_operation(job_name: str, verb: str, op_id: str) -> operations_pb2.Operation:
    """A long-running operation for `verb` ("cancel" or "delete") on a job, not yet done."""
    metadata = any_pb2.Any()
    metadata.Pack(batch_v1.OperationMetadata.pb(batch_v1.OperationMetadata(target=job_name, verb=verb)))
    name = f"{job_name.split('/jobs/', maxsplit=1)[0]}/operations/{op_id}"
    return operations_pb2.Operation(name=name, metadata=metadata, done=False)


def finish_operation(op: operations_pb2.Operation, verb: str) -> None:
    """Mark an operation done with the response type its RPC declares."""
    if op.done:
        return
    op.done = True
    if verb == "delete":
        op.response.Pack(empty_pb2.Empty())
    else:
        op.response.Pack(batch_v1.CancelJobResponse.pb(batch_v1.CancelJobResponse()))


def command_launcher(
    argv: Sequence[str], *, cwd: str | None = None, base_env: Mapping[str, str] | None = None
) -> Launcher:
    """A launcher running `argv` in its own session, so that cancel can kill the whole process group."""

    def launch(job: batch_v1.Job, env: dict[str, str]) -> subprocess.Popen[bytes]:
        full_env = {**(os.environ if base_env is None else base_env), **env}
        return subprocess.Popen(list(argv), cwd=cwd, env=full_env, start_new_session=True)

    return launch


def attempt_process(
    argv: Sequence[str], log: Path, *, cwd: Path, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """A task attempt's process as a local launcher starts it: its output (both streams) to `log`, no
    stdin, and a session of its own, so that cancel can kill the whole process group."""
    with log.open("wb") as out:
        return subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process group when the launcher made the process a group leader, else the process."""
    # Kill the whole group only when the launcher made the process a group leader; otherwise the group
    # is ours (the test process or the local stack) and only the process itself may go.
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except ProcessLookupError:
        pass


def terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the task's group now and SIGKILL it after a grace period if it is still alive."""
    signal_group(proc, signal.SIGTERM)

    def kill_if_alive() -> None:
        if proc.poll() is None:
            signal_group(proc, signal.SIGKILL)

    timer = threading.Timer(KILL_GRACE_S, kill_if_alive)
    timer.daemon = True
    timer.start()
