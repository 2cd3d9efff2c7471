#!/usr/bin/env python3
"""Record a run's status change from the orchestrator (entrypoint.sh and the Nextflow hooks).

    update_status.py RUN_ID STATUS [--started_at T] [--completed_at T] [--failed_at T] [--exit_code N]
        [--error_code C] [--error_message M] [--error_task T] [--metrics JSON] [--session_id S]

The change goes through the one status-change use case (services/status_change.py, source "hook"), like
every other writer: an invalid change is refused and logged, never forced; stored text is cleaned there.
The database comes from the environment (DATABASE_URL, or ARC_CLOUDSQL_INSTANCE / ARC_DB_NAME /
ARC_DB_IAM_USER). Exit codes:
    0  applied, or a harmless duplicate (the run already has this status)
    2  usage: bad arguments (unknown status, timestamp not ISO 8601, metrics not a JSON object)
    3  refused: the status machine does not allow it (e.g. the run already ended otherwise)
    4  the run does not exist
    5  the database stayed unreachable (or failing) after bounded retries; a completed or failed outcome
       is then left in gs://<runs>/runs/<id>/hook-status.json, which reconcile applies on Batch's FAILED
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

EXIT_OK, EXIT_USAGE, EXIT_REFUSED, EXIT_NOT_FOUND, EXIT_UNREACHABLE = 0, 2, 3, 4, 5
STATUSES = ("pending", "submitted", "running", "cancelling", "completed", "failed", "cancelled")
TIMESTAMP_FLAGS = {"running": "started_at", "completed": "completed_at", "failed": "failed_at"}
log = logging.getLogger("arc_reactor.orchestrator.update_status")


def find_package() -> None:
    """Make `arc_reactor` importable: PYTHONPATH first, then the image's and the repo's functions/."""
    try:
        import arc_reactor  # noqa: F401
    except ImportError:
        for candidate in (Path("/opt/arc/functions"), Path(__file__).resolve().parent.parent / "functions"):
            if (candidate / "arc_reactor").is_dir():
                sys.path.insert(0, str(candidate))
                return


def _timestamp(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {value!r}") from exc


def _metrics(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return parsed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; argparse exits with 2 on a usage error."""
    parser = argparse.ArgumentParser(description="Record a run's status change through the status machine.")
    parser.add_argument("run_id")
    parser.add_argument("status", choices=STATUSES)
    for flag in ("started_at", "completed_at", "failed_at"):
        parser.add_argument(f"--{flag}", type=_timestamp, help="ISO 8601 time (default: now)")
    parser.add_argument("--exit_code", type=int)
    parser.add_argument("--error_code")
    parser.add_argument("--error_message")
    parser.add_argument("--error_task")
    parser.add_argument("--metrics", type=_metrics, help="JSON object")
    parser.add_argument("--session_id")
    return parser.parse_args(argv)


def change_of(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], datetime | None]:
    """(fields, event detail, time) of the requested change."""
    fields = {
        "exit_code": args.exit_code,
        "error_code": args.error_code,
        "error_message": args.error_message,
        "error_task": args.error_task,
        "metrics": args.metrics,
        "session_id": args.session_id,
    }
    from arc_reactor.services.status_change import clean_fields

    fields = clean_fields({k: v for k, v in fields.items() if v is not None})
    detail = {"via": "update_status.py", **{k: v for k, v in fields.items() if k != "metrics"}}
    flag = TIMESTAMP_FLAGS.get(args.status)
    at: datetime | None = getattr(args, flag) if flag else None
    return fields, detail, at


def setup_logging(run_id: str) -> None:
    """JSON lines on stderr, each carrying the run id."""
    from arc_reactor.orchestrator.orchestrate import setup_run_logging

    setup_run_logging(run_id)


def apply(engine: Engine, args: argparse.Namespace, attempts: int, sleep: Callable[[float], None]) -> int:
    """Apply the change with bounded retries; return the exit code."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    from arc_reactor.adapters.retry import retry_call
    from arc_reactor.adapters.runs_repo import PostgresRunStore, TransitionResult
    from arc_reactor.core.status import RunStatus
    from arc_reactor.errors import NotFound, TransientError
    from arc_reactor.services.status_change import change_status

    target = RunStatus(args.status)
    fields, detail, at = change_of(args)
    runs = PostgresRunStore(engine)

    def attempt() -> TransitionResult:
        return change_status(
            runs, args.run_id, target, "hook", why="orchestrator", fields=fields, detail=detail, at=at
        )

    try:
        result = retry_call(
            attempt, attempts=attempts, base=0.5, cap=8.0, deadline=60.0,
            retry_on=(TransientError, OperationalError, InterfaceError), sleep=sleep,
        )  # fmt: skip
    except NotFound:
        log.error("run %s does not exist", args.run_id)
        return EXIT_NOT_FOUND
    except (TransientError, DBAPIError) as exc:
        log.error("database unreachable, status %s not recorded: %s", target.value, exc)
        if target.value in ("completed", "failed"):
            leave_marker(args.run_id, target.value, fields)
        return EXIT_UNREACHABLE
    if result.applied:
        log.info("status %s -> %s", result.previous.value if result.previous else "?", target.value)
        return EXIT_OK
    if result.current == target:
        log.info("status already %s: nothing to do", target.value)
        return EXIT_OK
    log.warning(
        "status %s refused: the run is %s%s", target.value, result.current.value,
        " (conflicting outcome recorded)" if result.conflict else "",
    )  # fmt: skip
    return EXIT_REFUSED


def leave_marker(run_id: str, status: str, fields: dict[str, Any]) -> None:
    """Leave the outcome the database did not take where reconcile reads it when Batch reports the job
    failed (core/layout.py hook_marker_name), so the engine's own error reaches the run at once instead of
    Batch's generic one. Best effort: Batch's state still ends the run without it."""
    from arc_reactor.adapters.storage import Storage, make_client
    from arc_reactor.core.layout import hook_marker_name
    from arc_reactor.settings import get_settings

    settings = get_settings()
    doc = {"status": status, "fields": fields, "at": datetime.now(UTC).isoformat()}
    try:
        Storage(make_client(settings)).write_bytes(
            settings.runs_bucket,
            hook_marker_name(run_id),
            json.dumps(doc, default=str).encode(),
            "application/json",
        )
    except Exception as exc:  # noqa: BLE001 - the marker only improves what Batch's state reports
        log.error("could not leave the outcome for reconcile either: %s", exc)
        return
    log.warning(
        "status %s left for reconcile in gs://%s/%s", status, settings.runs_bucket, hook_marker_name(run_id)
    )


def main(
    argv: Sequence[str] | None = None,
    *,
    engine: Engine | None = None,
    attempts: int = 5,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run the command; return the exit code (see the module docstring)."""
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse: usage error (2) or --help (0)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    find_package()
    setup_logging(args.run_id)
    if engine is None:
        from arc_reactor.adapters.db import get_engine
        from arc_reactor.settings import get_settings

        try:
            engine = get_engine(get_settings())
        except Exception as exc:  # noqa: BLE001 - any failure to reach the database is exit code 5
            log.error("cannot connect to the database: %s", exc)
            return EXIT_UNREACHABLE
    return apply(engine, args, attempts, sleep)


if __name__ == "__main__":
    sys.exit(main())
