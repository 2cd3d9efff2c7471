"""GET /runs/{id}/logs: the orchestrator's log lines, oldest first, a page at a time.

In the cloud they come from Cloud Logging (Batch task logs of the run's job, adapters/cloud_logging.py).
On the local stack they come from the files the local Batch service writes for each attempt of the job,
`<state>/jobs/arc-<run id>/attempt-N.log` (local/stack.py), where <state> is the folder holding the
stack's `pgdata/` (ARC_PGSERVER_DIR, which the stack sets). The wiring picks the source (RunLogSource);
this module never asks which. Page tokens are opaque.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from arc_reactor.adapters.cloud_logging import LogLine, LogPage, job_log_filter
from arc_reactor.api.auth import require_reader
from arc_reactor.api.http import Call, bad_request, decode_token, encode_token, json_response
from arc_reactor.core.ids import job_id_for
from arc_reactor.core.status import is_terminal
from arc_reactor.errors import BatchError, Problem

if TYPE_CHECKING:
    from arc_reactor.adapters.batch import BatchService
    from arc_reactor.adapters.cloud_logging import CloudLogs
    from arc_reactor.core.run_record import RunRecord

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 200
MAX_LINE_CHARS = 16 * 1024
_ATTEMPT = re.compile(r"^attempt-(\d+)\.log$")
_KEYS = frozenset({"page_size", "page_token"})


def _line(text: str) -> LogLine:
    """A local log line; the orchestrator's own lines are JSON with severity and time."""
    text = text.rstrip("\r\n")[:MAX_LINE_CHARS]
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and "message" in doc:
            return LogLine(doc.get("time"), str(doc.get("severity") or "DEFAULT"), str(doc["message"]))
    return LogLine(None, "DEFAULT", text)


def _attempts(job_dir: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in job_dir.glob("attempt-*.log") if (m := _ATTEMPT.match(p.name))]
    return sorted(found)


def read_local(job_dir: Path, page_size: int, attempt: int, offset: int, follow: bool) -> LogPage:
    """Up to `page_size` complete lines from attempt `attempt` at byte `offset` on, continuing into later
    attempts. At the end the token is None, unless `follow` (the run goes on) asks for where to resume."""
    lines: list[LogLine] = []
    position = (attempt, offset)
    for number, path in _attempts(job_dir):
        if number < attempt:
            continue
        start = offset if number == attempt else 0
        with path.open("rb") as fh:
            fh.seek(start)
            while len(lines) < page_size:
                raw = fh.readline()
                if not raw.endswith(b"\n"):  # end of file, or a line still being written
                    break
                lines.append(_line(raw.decode("utf-8", "replace")))
                start += len(raw)
        position = (number, start)
        if len(lines) >= page_size:
            return LogPage(lines, encode_token({"a": number, "o": start}))
    return LogPage(lines, encode_token({"a": position[0], "o": position[1]}) if follow else None)


def page_query(
    call: Call, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE
) -> tuple[int, dict[str, Any] | None]:
    """The page_size and decoded page_token of a paged GET (nothing else is accepted); 400 naming every
    malformed parameter."""
    size, token, problems = page_params(call, _KEYS, default, maximum)
    if problems:
        raise bad_request("the query is invalid", problems)
    return size, token


def page_params(
    call: Call, keys: frozenset[str], default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE
) -> tuple[int, dict[str, Any] | None, list[Problem]]:
    """The page_size and decoded page_token of a paged GET that accepts `keys`, with the problems of those
    two and of any parameter not in `keys`, for a caller that checks its own filters too."""
    problems = [Problem("query", "unknown parameter", field=k) for k in call.request.args if k not in keys]
    size, token = default, None
    raw_size = call.request.args.get("page_size")
    if raw_size is not None:
        size = int(raw_size) if raw_size.isdigit() else 0
        if not 1 <= size <= maximum:
            problems.append(Problem("query", f"must be an integer from 1 to {maximum}", field="page_size"))
    raw_token = call.request.args.get("page_token")
    if raw_token is not None:
        try:
            token = decode_token(raw_token)
        except ValueError:
            problems.append(Problem("query", "is not a page token from this API", field="page_token"))
    return size, token, problems


class RunLogSource(Protocol):
    """Where a run's log lines come from; the wiring picks the implementation."""

    @property
    def name(self) -> str:
        """What the API reports as the lines' source."""
        ...

    def page(self, run: RunRecord, size: int, token: dict[str, Any] | None) -> LogPage:
        """Up to `size` lines of the run from `token` on (None: the start)."""
        ...


@dataclass(frozen=True)
class LocalJobLogs:
    """The local Batch service's files: `<jobs_dir>/arc-<run id>/attempt-N.log`."""

    jobs_dir: Path
    name: str = "local"

    def page(self, run: RunRecord, size: int, token: dict[str, Any] | None) -> LogPage:
        """Lines from the attempt files; the token is (attempt, byte offset)."""
        token = token or {"a": 0, "o": 0}
        attempt, offset = token.get("a"), token.get("o")
        if not isinstance(attempt, int) or not isinstance(offset, int) or attempt < 0 or offset < 0:
            raise bad_request("page_token is not a page token from this API")
        follow = not is_terminal(run.status)
        return read_local(self.jobs_dir / job_id_for(run.id), size, attempt, offset, follow)


@dataclass(frozen=True)
class CloudJobLogs:
    """Cloud Logging: the Batch task logs of the run's job (by its uid, else the run-id label)."""

    batch: BatchService
    cloud_logs: CloudLogs
    project: str
    name: str = "cloud_logging"

    def page(self, run: RunRecord, size: int, token: dict[str, Any] | None) -> LogPage:
        """Lines from Cloud Logging; the token wraps Cloud Logging's own."""
        uid = None
        if run.batch_job_name:
            try:
                uid = self.batch.get_job(run.batch_job_name).uid or None
            except BatchError:
                uid = None  # job gone or Batch down: the run-id label still finds the lines
        cloud_token = str((token or {}).get("c", ""))
        filter_ = job_log_filter(self.project, run.id, uid, run.created_at)
        try:
            page = self.cloud_logs.read(filter_, size, cloud_token)
        except ValueError as exc:
            raise bad_request(f"page_token was refused: {exc}") from exc
        next_token = encode_token({"c": page.next_page_token}) if page.next_page_token else None
        return LogPage(page.lines, next_token)


def logs(call: Call) -> Any:
    """GET /runs/{id}/logs?page_size=&page_token=."""
    run_id = call.run_id
    size, token = page_query(call)
    run = call.deps.runs.get_run(run_id)
    require_reader(call.deps.settings, call.caller, run)
    source = call.deps.run_logs
    page = source.page(run, size, token)
    body = {
        "run_id": run_id,
        "source": source.name,
        "lines": [
            {"timestamp": ln.timestamp, "severity": ln.severity, "message": ln.message} for ln in page.lines
        ],
        "next_page_token": page.next_page_token,
    }
    return json_response(body)
