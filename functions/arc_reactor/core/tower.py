"""The subset of Nextflow's Tower (Seqera Platform) trace protocol that runs_api receives (pure).

Nextflow's nf-tower client (TowerClient, 24.x) sends, to `<endpoint>/trace/...`:
`POST create` (answered with a workflowId), `PUT <id>/begin` (answered with a watchUrl),
`PUT <id>/progress` (`tasks`: up to 100 task trace records, the latest state of each, and `progress`),
`PUT <id>/heartbeat` (`progress`) and `PUT <id>/complete` (`workflow`, `metrics`, `progress`). Task records
are TraceRecord fields in camelCase: `taskId`, `status` (NEW, SUBMITTED, RUNNING, COMPLETED, FAILED, ABORTED,
CACHED), `attempt`, `process`, `name`, `tag`, `submit`/`start`/`complete` (ISO-8601 with an offset, or
null), `exit` (2147483647 until the task completed), `cpus`, `memory` (bytes), `workdir`, `nativeId`,
`errorAction`, `realtime`/`duration` (ms), and `executor`, `cloudZone`, `machineType`, `priceModel`.

A run's access token is `arc.<run id>.<MAC>` (run_token): exactly two dots, so Nextflow sends it as
`Authorization: Bearer <token>` (any other shape it sends as Basic `@token:<token>`, also accepted). The MAC
is an HMAC of the run id under the deployment's `tower` key, kept in the database (migration 0010).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime
from typing import Any

from arc_reactor.core.batch_policy import NEXTFLOW_UNKNOWN_EXIT_STATUS, SPOT_PREEMPTED_EXIT_CODE
from arc_reactor.core.ids import is_run_id
from arc_reactor.core.progress import normalize
from arc_reactor.core.tasks import TERMINAL_TASK_STATUSES, TaskUpdate

TOKEN_PREFIX = "arc"  # noqa: S105 - the fixed first part of every run token, not a secret
STATUSES = {
    "NEW": "pending",
    "SUBMITTED": "submitted",
    "RUNNING": "running",
    "COMPLETED": "succeeded",
    "CACHED": "cached",
    "FAILED": "failed",
    "ABORTED": "aborted",
}
MAX_TASKS_PER_REQUEST = 1000  # Nextflow sends at most 100
_EXTRA = ("hash", "errorAction", "realtime", "duration", "pcpu", "peakRss", "executor", "priceModel")


class TowerRequestInvalid(ValueError):
    """A request body that is not what Nextflow sends."""


def run_token(key: bytes, run_id: str) -> str:
    """The run's access token: its id and an HMAC-SHA256 of it under the deployment's `tower` key
    (runs_repo.signing_key), so every submission of the run (a redelivery, a recovery's, a Batch retry's)
    gives the same token and nothing per run is stored."""
    mac = hmac.new(key, f"tower-token:{run_id}".encode(), hashlib.sha256).digest()
    return f"{TOKEN_PREFIX}.{run_id}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def token_matches(key: bytes, run_id: str, token: str) -> bool:
    """True when `token` is `run_id`'s (compared in constant time)."""
    return hmac.compare_digest(run_token(key, run_id).encode(), token.encode())


def token_from_header(header: str) -> tuple[str, str] | None:
    """(run id, token) from an Authorization header as Nextflow sends it, or None."""
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            value = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        value = value.removeprefix("@token:")
    elif scheme.lower() != "bearer":
        return None
    prefix, _, rest = value.partition(".")
    run_id, _, secret = rest.partition(".")
    if prefix != TOKEN_PREFIX or not is_run_id(run_id) or not secret:
        return None
    return run_id, value


def _time(value: Any) -> datetime | None:
    if value in (None, "", 0):
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise TowerRequestInvalid(f"not an ISO-8601 time: {value!r}") from exc


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise TowerRequestInvalid(f"not a number: {value!r}") from exc


def _text(value: Any, limit: int = 1024) -> str | None:
    return None if value is None else str(value)[:limit]


def task_exit(status: str, exit_value: int | None) -> tuple[int | None, bool | None]:
    """The exit code the ledger keeps of a TraceRecord's `exit` (none before the attempt ended, and none for
    Nextflow's "no exit status", 2147483647: a task that never completed or lost its VM), and whether it
    says the Spot VM was preempted (True, else None: not said)."""
    code = None if exit_value == NEXTFLOW_UNKNOWN_EXIT_STATUS else exit_value
    preempted = True if code == SPOT_PREEMPTED_EXIT_CODE else None
    return (code if status in TERMINAL_TASK_STATUSES else None), preempted


def task_update(record: Any) -> TaskUpdate:
    """A ledger update from one Tower task record."""
    if not isinstance(record, dict):
        raise TowerRequestInvalid("a task is not an object")
    status = STATUSES.get(str(record.get("status")))
    task_id = record.get("taskId")
    if status is None or task_id is None:
        raise TowerRequestInvalid(f"a task needs taskId and a known status, not {record.get('status')!r}")
    exit_code, preempted = task_exit(status, _int(record.get("exit")))
    price = record.get("priceModel")
    return TaskUpdate(
        task_id=str(task_id),
        status=status,
        attempt=_int(record.get("attempt")) or 1,
        process=_text(record.get("process"), 255),
        name=_text(record.get("name"), 255),
        tag=_text(record.get("tag"), 255),
        exit_code=exit_code,
        submitted_at=_time(record.get("submit")),
        started_at=_time(record.get("start")),
        completed_at=_time(record.get("complete")),
        cpus=_int(record.get("cpus")),
        memory_bytes=_int(record.get("memory")),
        machine_type=_text(record.get("machineType"), 64),
        zone=_text(record.get("cloudZone"), 64),
        spot=None if price is None else price == "spot",
        preempted=preempted,
        native_id=_text(record.get("nativeId"), 256),
        work_dir=_text(record.get("workdir"), 1024),
        extra={k: record[k] for k in _EXTRA if record.get(k) is not None},
    )


def progress_summary(progress: Any) -> dict[str, Any]:
    """What a run keeps of Nextflow's ProgressRecord: the totals and, per process, the counts
    (core/progress.py)."""
    if not isinstance(progress, dict):
        raise TowerRequestInvalid("progress is not an object")
    processes = [p for p in progress.get("processes") or [] if isinstance(p, dict)]
    return normalize("nextflow", progress, processes)


def tasks_of(body: Any) -> list[TaskUpdate]:
    """The ledger updates of a progress request's `tasks`."""
    if not isinstance(body, dict):
        raise TowerRequestInvalid("the body is not a JSON object")
    records = body.get("tasks") or []
    if not isinstance(records, list) or len(records) > MAX_TASKS_PER_REQUEST:
        raise TowerRequestInvalid(f"tasks must be a list of at most {MAX_TASKS_PER_REQUEST}")
    return [task_update(r) for r in records]
