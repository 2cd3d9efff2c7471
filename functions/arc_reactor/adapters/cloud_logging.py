"""Cloud Logging adapter: reads a run's orchestrator log lines (Batch task logs) page by page.

Batch writes what the orchestrator container prints to the `batch_task_logs` log, each entry labelled with
the job's uid (`labels.job_uid`). The SDK is imported when the first page is read, never at import time;
tests give the real client a channel to a local LoggingServiceV2 server."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from arc_reactor.errors import DependencyRefused, TransientError

if TYPE_CHECKING:
    from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

RPC_TIMEOUT_S = 20.0
TASK_LOG = "batch_task_logs"


@dataclass(frozen=True)
class LogLine:
    """One log line: when, how severe, and the text."""

    timestamp: str | None
    severity: str
    message: str


@dataclass(frozen=True)
class LogPage:
    """Lines in time order and the token of the next page (None at the end)."""

    lines: list[LogLine]
    next_page_token: str | None


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def job_log_filter(project: str, run_id: str, job_uid: str | None, since: datetime | None) -> str:
    """The Logging filter for a run's orchestrator lines: its job's uid, or the run-id label Arc Reactor
    puts on the job, from the run's creation on (a lower bound keeps the scan short)."""
    who = [f"labels.job_uid={_quote(job_uid)}"] if job_uid else []
    who.append(f'labels."run-id"={_quote(run_id)}')
    parts = [f"logName={_quote(f'projects/{project}/logs/{TASK_LOG}')}", f"({' OR '.join(who)})"]
    if since is not None:
        parts.append(f"timestamp>={_quote(since.isoformat())}")
    return " AND ".join(parts)


def _message(entry: Any) -> str:
    if entry.text_payload:
        return str(entry.text_payload)
    payload = dict(entry.json_payload or {})
    return str(payload.get("message", payload)) if payload else ""


def _severity(value: Any) -> str:
    """LogEntry.severity is a protobuf enum number (google.logging.type.LogSeverity)."""
    from google.logging.type import log_severity_pb2

    try:
        return str(log_severity_pb2.LogSeverity.Name(int(value)))
    except ValueError:
        return "DEFAULT"


class CloudLogs:
    """Reads log entries of the project; the client is created on first use unless one is given."""

    def __init__(self, project: str, client: LoggingServiceV2Client | None = None) -> None:
        self.project = project
        self._client = client
        self._lock = threading.Lock()

    def _get_client(self) -> LoggingServiceV2Client:
        with self._lock:
            if self._client is None:
                from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

                self._client = LoggingServiceV2Client()
            return self._client

    def read(self, filter_: str, page_size: int, page_token: str = "") -> LogPage:
        """One page of entries matching `filter_`, oldest first. ValueError for a page token Logging
        refuses; TransientError when Logging is unavailable."""
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        request = {
            "resource_names": [f"projects/{self.project}"],
            "filter": filter_,
            "order_by": "timestamp asc",
            "page_size": page_size,
            "page_token": page_token,
        }
        try:
            pager = self._get_client().list_log_entries(request=request, timeout=RPC_TIMEOUT_S)
            page = next(iter(pager.pages))  # exactly one RPC
        except gexc.InvalidArgument as exc:
            raise ValueError(f"Cloud Logging refused the request: {exc.message}") from exc
        except (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError) as exc:
            raise TransientError(f"Cloud Logging unavailable: {exc}") from exc
        except (gexc.PermissionDenied, gexc.Unauthenticated) as exc:
            raise DependencyRefused(f"Cloud Logging refused to read the run's logs: {exc.message}") from exc
        except gexc.GoogleAPICallError as exc:
            raise TransientError(f"Cloud Logging failed: {exc}") from exc
        except auth_exc.GoogleAuthError as exc:
            raise DependencyRefused(f"no credentials to read Cloud Logging: {exc}") from exc
        lines = [
            LogLine(
                timestamp=e.timestamp.isoformat() if e.timestamp else None,
                severity=_severity(e.severity),
                message=_message(e),
            )
            for e in page.entries
        ]
        return LogPage(lines, page.next_page_token or None)
