"""Run ids and Batch job ids.

A run id is `r` + 10 base-36 digits of milliseconds since the epoch + 8 random base-36 digits (19
characters, lowercase, time-ordered). The Batch job id is `arc-<run id>`, which satisfies Batch's rule
`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$` (at most 63 characters, lowercase letter first).
"""

from __future__ import annotations

import re
import secrets
import time

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
RUN_ID_RE = re.compile(r"^r[0-9a-z]{18}$")
JOB_ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
JOB_PREFIX = "arc-"


def _base36(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def new_run_id(now_ms: int | None = None) -> str:
    """A fresh, time-ordered run id."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return "r" + _base36(ms, 10) + "".join(secrets.choice(_ALPHABET) for _ in range(8))


def is_run_id(value: str) -> bool:
    """True when `value` has the run id shape."""
    return bool(RUN_ID_RE.match(value))


def job_id_for(run_id: str) -> str:
    """The Batch job id of a run's orchestrator job."""
    job_id = JOB_PREFIX + run_id
    if not JOB_ID_RE.match(job_id):
        raise ValueError(f"run id {run_id!r} does not make a valid Batch job id")
    return job_id


def job_id_of(job_name_or_id: str) -> str:
    """The job id in a job id or full job name. Compare jobs by it, never by the full name: Batch answers
    with the project's number (projects/123456/...) where a request may have used the project id."""
    return job_name_or_id.rsplit("/", 1)[-1]


def run_id_from_job(job_name_or_id: str) -> str | None:
    """The run id in a job id or full job name (projects/p/locations/r/jobs/arc-<run>), else None."""
    job_id = job_id_of(job_name_or_id)
    if not job_id.startswith(JOB_PREFIX):
        return None
    run_id = job_id[len(JOB_PREFIX) :]
    return run_id if is_run_id(run_id) else None


# A Batch task's resource name: <job name>/taskGroups/<group>/tasks/<index>.
_TASK_NAME_RE = re.compile(r"^(projects/[^/]+/locations/[^/]+/jobs/[^/]+)/taskGroups/[^/]+/tasks/[^/]+$")
# A task uid as Batch (and the local Batch service) writes it: <job uid>-<group>-<index>.
_TASK_UID_RE = re.compile(r"^(.+)-group\d+-\d+$")


def job_name_from_task_name(task_name: str) -> str | None:
    """The job resource name in a task's resource name, else None."""
    found = _TASK_NAME_RE.match(task_name)
    return found.group(1) if found else None


def job_uid_from_task_uid(task_uid: str) -> str | None:
    """The job uid a task uid starts with (`<job uid>-group0-3`), else None."""
    found = _TASK_UID_RE.match(task_uid)
    return found.group(1) if found else None


def notification_job(attributes: dict[str, str]) -> tuple[str | None, str | None]:
    """(job name or id, job uid) of a Batch Pub/Sub notification. Job-level messages carry JobName and
    JobUID; task-level ones carry TaskName, TaskUID and JobUID but no JobName, so the job is taken from
    whichever the message has."""
    name = attributes.get("JobName") or job_name_from_task_name(attributes.get("TaskName", ""))
    uid = attributes.get("JobUID") or job_uid_from_task_uid(attributes.get("TaskUID", ""))
    return name or None, uid or None
