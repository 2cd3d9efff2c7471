"""Snakemake logger plugin `arc` (`snakemake --logger arc`): Snakemake's own job events into the run's task
ledger (adapters/tasks_repo.py), and its progress onto the run.

Snakemake 9 logs structured records to logger plugins (snakemake-interface-logger-plugins): JOB_INFO when a
job is scheduled (jobid, rule_name, wildcards, threads, resources), JOB_STARTED (jobs: ids) when it starts,
JOB_FINISHED (job_id), JOB_ERROR (jobid, rule_name, rule_msg) and RUN_INFO (the jobs it will run, per
rule). That is what a logger plugin is for, and it needs nothing beside Snakemake (a wrapper parsing its
console output would break with its wording). A job Snakemake runs again after an error (--retries, or a
new run of the same work dir) is a new attempt: a new ledger row.

Progress (core/progress.py) is counted per rule from those events: RUN_INFO's planned jobs are pending
until scheduled. Snakemake reports nothing about the jobs a resumed run skips because their outputs are
there, so a resumed run first makes a dry run of the whole DAG (--forceall) with this plugin and
`--logger-arc-dag-counts FILE`: in a dry run the plugin only writes RUN_INFO's counts to FILE (never the
ledger), and the real run, given the same setting, counts each rule's jobs beyond its planned ones as
cached.

Updates are buffered and written in one statement every FLUSH_S seconds or FLUSH_TASKS updates, and when
Snakemake closes its loggers; the first ones (the plan) at once. A flusher thread writes what is due even
when Snakemake logs nothing for a while (jobs that run for hours), so the progress and the ledger never
lag a quiet workflow by more than FLUSH_S. The database is the orchestrator's (DATABASE_URL, or the Cloud
SQL settings update_status.py uses). A write that fails is retried at the next flush, at most
MAX_FAILED_FLUSHES times in a row, then given up with a warning: the ledger is a view of the run, never a
reason to fail it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from logging import LogRecord
from pathlib import Path
from typing import Any

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent
from snakemake_interface_logger_plugins.settings import LogHandlerSettingsBase

from arc_reactor.core.snakemake_batch import TASK_JOB, TASK_JOBID, TASK_RUNNING, TASK_SPOT

FLUSH_S = 2.0
FLUSH_TASKS = 100
MAX_FAILED_FLUSHES = 5
TAIL_CHARS = 2000  # of a failed job's log kept in the ledger (run_tasks.error_tail)
MAX_TAIL_FILES = 5
MIB = 1024 * 1024
log = logging.getLogger("arc.snakemake_ledger")


@dataclass
class LogHandlerSettings(LogHandlerSettingsBase):
    """The run id and the database come from the orchestrator's environment."""

    dag_counts: str | None = field(
        default=None,
        metadata={
            "help": "A JSON file of the whole DAG's jobs per rule: a dry run writes it, a run reads it to "
            "count the jobs it skips as cached",
            "required": False,
            "type": str,  # the annotation is a string here (postponed annotations): argparse needs a type
        },
    )


class Ledger:
    """What the handler keeps between records: each job's attempt and the updates not written yet."""

    def __init__(self, run_id: str, clock: Any = time.monotonic) -> None:
        self.run_id, self.clock = run_id, clock
        self.attempts: dict[str, int] = {}
        self.ended: set[str] = set()
        self.pending: list[Any] = []
        self.jobs: dict[str, tuple[str, str]] = {}  # job id -> (rule, status of its latest attempt)
        self.planned: dict[str, int] = {}  # rule -> jobs this run will run (RUN_INFO)
        self.whole: dict[str, int] | None = None  # rule -> jobs of the whole DAG (resuming only)
        self.changed = False  # the progress changed since it was last written
        self.last_flush = -float("inf")  # the first updates (the plan) are written at once
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
        rule = fields.get("process") or self.jobs.get(key, ("?", ""))[0]
        self.jobs[key] = (str(rule), status)
        self.changed = True

    def note(self, job_id: Any, **fields: Any) -> None:
        """More about a known job's current attempt, its status unchanged (its Batch job, from the
        executor)."""
        current = self.jobs.get(str(job_id))
        if current is not None:
            self.update(job_id, current[1], **fields)

    def plan(self, stats: Any) -> None:
        """RUN_INFO: the jobs this run will run, per rule."""
        counts = _per_rule(stats)
        if counts is not None:
            self.planned, self.changed = counts, True

    def progress(self) -> dict[str, Any]:
        """The run's counts per rule: its jobs by the status of their latest attempt, the planned ones not
        scheduled yet as pending, and (resuming) the whole DAG's jobs beyond the planned ones as cached."""
        from arc_reactor.core.progress import summed

        rules: dict[str, dict[str, int]] = {}
        for rule in {**(self.whole or {}), **self.planned}:
            rules[rule] = {"pending": self.planned.get(rule, 0)}
        for key, (rule, status) in self.jobs.items():
            counts = rules.setdefault(rule, {"pending": 0})
            counts[status] = counts.get(status, 0) + 1
            counts["pending"] -= 1
            counts["retries"] = counts.get("retries", 0) + self.attempts.get(key, 1) - 1
        for rule, counts in rules.items():
            counts["pending"] = max(counts["pending"], 0)
            if self.whole is not None:
                counts["cached"] = max(self.whole.get(rule, 0) - self.planned.get(rule, 0), 0)
        return summed("snakemake", [{"name": rule, **counts} for rule, counts in rules.items()])

    def due(self) -> bool:
        return len(self.pending) >= FLUSH_TASKS or self.clock() - self.last_flush >= FLUSH_S

    def flush(self) -> None:
        """Write what is pending (one statement for the tasks, one for the progress)."""
        if not self.pending and not self.changed:
            return  # nothing written: the next update is still written as soon as it is due
        self.last_flush = self.clock()
        try:
            from arc_reactor.adapters import runs_repo
            from arc_reactor.adapters.db import get_engine
            from arc_reactor.adapters.tasks_repo import upsert_tasks
            from arc_reactor.settings import get_settings

            engine = get_engine(get_settings())
            if self.pending:
                upsert_tasks(engine, self.run_id, self.pending)
            if self.changed:
                runs_repo.set_progress(engine, self.run_id, self.progress(), int(time.time() * 1000))
        except Exception as exc:  # noqa: BLE001 - the ledger must never stop the workflow
            self.failures += 1
            if self.failures < MAX_FAILED_FLUSHES:
                return  # kept: tried again at the next flush
            log.warning("task ledger not written (%s): %d update(s) dropped", exc, len(self.pending))
        self.pending, self.changed, self.failures = [], False, 0


def log_tail(paths: Any, limit: int = TAIL_CHARS) -> str:
    """The last lines of a failed job's own logs (its rule's `log:` files, relative to Snakemake's working
    directory, which is this process's): at most `limit` characters in all, read from each file's end."""
    parts: list[str] = []
    names = [str(p) for p in paths if isinstance(p, str | os.PathLike)][:MAX_TAIL_FILES]
    for name in names:
        try:
            with Path(name).open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(handle.tell() - limit, 0))
                text = handle.read().decode("utf-8", "replace").strip()
        except OSError:
            continue
        if text:
            parts.append(f"{name}:\n{text}" if len(names) > 1 else text)
    return "\n".join(parts)[-limit:]


def _task_job(ledger: Ledger, record: LogRecord) -> None:
    """The executor plugin's word on a job (snakemake_executor_plugin_arc): its Batch job, which makes it a
    task on a VM of its own (the cost estimate counts it), and when Batch started running it."""
    jobid = getattr(record, TASK_JOBID, None)
    native = str(getattr(record, TASK_JOB, ""))
    if jobid is None:
        return
    running = getattr(record, TASK_RUNNING, None)
    if running:
        try:
            since = datetime.fromisoformat(str(running))
        except ValueError:
            since = _now()
        ledger.update(jobid, "running", started_at=since, native_id=native)
    else:
        ledger.note(jobid, native_id=native, spot=bool(getattr(record, TASK_SPOT, False)))


def _now() -> datetime:
    return datetime.now(UTC)


def _per_rule(stats: Any) -> dict[str, int] | None:
    """RUN_INFO's job counts per rule (its `total` left out); None when it carries none."""
    if not hasattr(stats, "items"):
        return None
    return {str(k): int(v) for k, v in stats.items() if k != "total" and isinstance(v, int)}


def _write_counts(path: str, stats: Any) -> None:
    """A dry run's RUN_INFO (the whole DAG's jobs per rule) into `path`, as JSON."""
    counts = _per_rule(stats)
    if counts is not None:
        Path(path).write_text(json.dumps(counts), encoding="utf-8")


def _read_counts(path: str) -> dict[str, int] | None:
    """What _write_counts wrote; None (no cached count) when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("no DAG job counts (%s): the run's cached jobs are not counted", exc)
        return None
    if not isinstance(data, dict):
        return None
    return {str(k): v for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}


class LogHandler(LogHandlerBase):
    """Turns Snakemake's job events into ledger updates."""

    def __post_init__(self) -> None:
        run_id = os.environ.get("RUN_ID", "")
        self.dag_counts = getattr(self.settings, "dag_counts", None)
        self.dry_run = bool(getattr(self.common_settings, "dryrun", False))
        self.ledger = Ledger(run_id) if run_id and not self.dry_run else None
        if self.ledger is not None and self.dag_counts:
            self.ledger.whole = _read_counts(self.dag_counts)
            self.ledger.changed = self.ledger.whole is not None  # even with nothing left to run
        self._lock = threading.Lock()  # Snakemake's thread (emit) and the flusher share the ledger
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if self.ledger is not None:
            self._flusher = threading.Thread(target=self._flush_when_due, name="arc-ledger", daemon=True)
            self._flusher.start()

    def _flush_when_due(self) -> None:
        while not self._stop.wait(FLUSH_S / 4):
            with self._lock:
                if self.ledger is not None and self.ledger.due():
                    self.ledger.flush()

    def emit(self, record: LogRecord) -> None:
        with self._lock:
            self._emit(record)

    def _emit(self, record: LogRecord) -> None:
        ledger = self.ledger
        event = getattr(record, "event", None)
        if self.dry_run and event == LogEvent.RUN_INFO and self.dag_counts:
            _write_counts(self.dag_counts, getattr(record, "stats", None))
        if ledger is not None and getattr(record, TASK_JOB, None):
            _task_job(ledger, record)
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
            tail = log_tail(getattr(record, "log", None) or []) or (str(message) if message else "")
            ledger.update(
                record.jobid,  # type: ignore[attr-defined]
                "failed",
                process=getattr(record, "rule_name", None),
                completed_at=_now(),
                error_tail=tail[-TAIL_CHARS:] or None,
            )
        elif event == LogEvent.RUN_INFO:
            ledger.plan(getattr(record, "stats", None))
        if ledger.due():
            ledger.flush()

    def close(self) -> None:
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=FLUSH_S * 5)  # bounded: a flush is one or two statements
        with self._lock:
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
