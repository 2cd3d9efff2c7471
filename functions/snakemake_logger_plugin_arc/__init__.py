"""Snakemake logger plugin `arc` (`snakemake --logger arc`): Snakemake's own job events into the run's task
ledger (adapters/tasks_repo.py), and its progress onto the run.

Snakemake 9 logs structured records to logger plugins (snakemake-interface-logger-plugins): JOB_INFO when a
job is scheduled (jobid, rule_name, wildcards, threads, resources), JOB_STARTED (jobs: ids) when it starts,
JOB_FINISHED (job_id), JOB_ERROR (jobid, rule_name, rule_msg) and PROGRESS (done, total). That is what a
logger plugin is for, and it needs nothing beside Snakemake (a wrapper parsing its console output would
break with its wording). A job Snakemake runs again after an error (--retries, or a new run of the same
work dir) is a new attempt: a new ledger row.

Updates are buffered and written in one statement every FLUSH_S seconds or FLUSH_TASKS updates, and when
Snakemake closes its loggers. The database is the orchestrator's (DATABASE_URL, or the Cloud SQL settings
update_status.py uses). A write that fails is retried at the next flush, at most MAX_FAILED_FLUSHES times
in a row, then given up with a warning: the ledger is a view of the run, never a reason to fail it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from logging import LogRecord
from typing import Any

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent
from snakemake_interface_logger_plugins.settings import LogHandlerSettingsBase

FLUSH_S = 2.0
FLUSH_TASKS = 100
MAX_FAILED_FLUSHES = 5
MIB = 1024 * 1024
log = logging.getLogger("arc.snakemake_ledger")


@dataclass
class LogHandlerSettings(LogHandlerSettingsBase):
    """No settings: the run id and the database come from the orchestrator's environment."""


class Ledger:
    """What the handler keeps between records: each job's attempt and the updates not written yet."""

    def __init__(self, run_id: str, clock: Any = time.monotonic) -> None:
        self.run_id, self.clock = run_id, clock
        self.attempts: dict[str, int] = {}
        self.ended: set[str] = set()
        self.pending: list[Any] = []
        self.progress: dict[str, Any] | None = None
        self.last_flush = clock()
        self.failures = 0

    def update(self, job_id: Any, status: str, **fields: Any) -> None:
        from arc_reactor.core.tasks import TaskUpdate

        key = str(job_id)
        if status == "submitted" and key in self.ended:  # scheduled again after it ended: a new attempt
            self.ended.discard(key)
            self.attempts[key] = self.attempts.get(key, 1) + 1
        if status in ("succeeded", "failed"):
            self.ended.add(key)
        self.pending.append(TaskUpdate(key, status, self.attempts.setdefault(key, 1), **fields))

    def due(self) -> bool:
        return len(self.pending) >= FLUSH_TASKS or self.clock() - self.last_flush >= FLUSH_S

    def flush(self) -> None:
        """Write what is pending (one statement for the tasks, one for the progress)."""
        self.last_flush = self.clock()
        if not self.pending and self.progress is None:
            return
        try:
            from arc_reactor.adapters import runs_repo
            from arc_reactor.adapters.db import get_engine
            from arc_reactor.adapters.tasks_repo import upsert_tasks
            from arc_reactor.settings import get_settings

            engine = get_engine(get_settings())
            if self.pending:
                upsert_tasks(engine, self.run_id, self.pending)
            if self.progress is not None:
                runs_repo.set_progress(engine, self.run_id, self.progress, int(time.time() * 1000))
        except Exception as exc:  # noqa: BLE001 - the ledger must never stop the workflow
            self.failures += 1
            if self.failures < MAX_FAILED_FLUSHES:
                return  # kept: tried again at the next flush
            log.warning("task ledger not written (%s): %d update(s) dropped", exc, len(self.pending))
        self.pending, self.progress, self.failures = [], None, 0


def _now() -> datetime:
    return datetime.now(UTC)


class LogHandler(LogHandlerBase):
    """Turns Snakemake's job events into ledger updates."""

    def __post_init__(self) -> None:
        run_id = os.environ.get("RUN_ID", "")
        self.ledger = Ledger(run_id) if run_id else None

    def emit(self, record: LogRecord) -> None:
        ledger = self.ledger
        event = getattr(record, "event", None)
        if ledger is None or event is None:
            return
        if event == LogEvent.JOB_INFO:
            resources = getattr(record, "resources", None) or {}
            mem_mb = resources.get("mem_mb") if hasattr(resources, "get") else None
            wildcards = getattr(record, "wildcards", None) or {}
            ledger.update(
                record.jobid,  # type: ignore[attr-defined]
                "submitted",
                process=getattr(record, "rule_name", None),
                name=f"{getattr(record, 'rule_name', '')} ({record.jobid})",  # type: ignore[attr-defined]
                tag=",".join(f"{k}={v}" for k, v in dict(wildcards).items())[:255] or None,
                cpus=getattr(record, "threads", None),
                memory_bytes=int(mem_mb) * MIB if isinstance(mem_mb, int | float) else None,
                submitted_at=_now(),
            )
        elif event == LogEvent.JOB_STARTED:
            for job_id in getattr(record, "jobs", None) or []:
                ledger.update(job_id, "running", started_at=_now())
        elif event == LogEvent.JOB_FINISHED:
            ledger.update(record.job_id, "succeeded", completed_at=_now(), exit_code=0)  # type: ignore[attr-defined]
        elif event == LogEvent.JOB_ERROR:
            message = getattr(record, "rule_msg", None) or record.getMessage()
            ledger.update(
                record.jobid,  # type: ignore[attr-defined]
                "failed",
                process=getattr(record, "rule_name", None),
                completed_at=_now(),
                error_tail=str(message)[-2000:] if message else None,
            )
        elif event == LogEvent.PROGRESS:
            done, total = getattr(record, "done", 0), getattr(record, "total", 0)
            ledger.progress = {"source": "snakemake", "succeeded": int(done), "total": int(total)}
        if ledger.due():
            ledger.flush()

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.flush()
        super().close()

    @property
    def writes_to_stream(self) -> bool:
        return False

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        return False

    @property
    def has_formatter(self) -> bool:
        return False

    @property
    def needs_rulegraph(self) -> bool:
        return False
