"""The lineage's Nextflow session id, kept in the bucket next to the resume cache (CACHE_DIR), so that a
Batch retry of the orchestrator task (e.g. after a spot preemption, when no hook ran and the run row may
not have it) resumes the session its first attempt started, and a recovery finds its parent's.

Nextflow logs the id as it starts (`Session uuid: ...` in .nextflow.log): `watch` polls for that line while
the engine runs and records it at once; `finish` records it again at the end, in case the watch missed it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

from arc_reactor.core.engine_command import session_from_log, session_from_record, session_record, session_uri
from arc_reactor.orchestrator.storage_io import Context, read_object, write_object

log = logging.getLogger("arc_reactor.orchestrator.orchestrate")
WATCH_INTERVAL_S = 1.0
WATCH_DEADLINE_S = 900.0  # Nextflow logs its session within seconds of starting; give up long after
LOG_HEAD_BYTES = 256 * 1024  # the session line comes early in the log


def recorded(ctx: Context) -> str | None:
    """The session id recorded for the lineage, or None (none recorded, no CACHE_DIR, storage down)."""
    uri = session_uri(ctx.env)
    if uri is None:
        return None
    try:
        raw = read_object(ctx, uri)
    except Exception as exc:  # noqa: BLE001 - without it the run starts afresh: slower, still correct
        log.warning("cannot read the recorded Nextflow session %s: %s", uri, exc)
        return None
    return session_from_record(raw.decode("utf-8", "replace")) if raw is not None else None


def record(ctx: Context, session_id: str) -> bool:
    """Record the lineage's session id; False (and a warning) when it cannot be written."""
    uri = session_uri(ctx.env)
    if uri is None:
        log.warning("no CACHE_DIR: Nextflow session %s is not recorded, a retry starts afresh", session_id)
        return False
    data = session_record(session_id, ctx.env.run_id, datetime.now(UTC).isoformat()).encode()
    try:
        write_object(ctx, uri, data)
    except Exception as exc:  # noqa: BLE001 - a warning: the hooks still put it in the run row
        log.warning("could not record Nextflow session %s at %s: %s", session_id, uri, exc)
        return False
    log.info("Nextflow session %s recorded at %s", session_id, uri, extra={"event": "session_recorded"})
    return True


def from_log(ctx: Context) -> str | None:
    """The session id in this attempt's .nextflow.log, if Nextflow got that far."""
    path = ctx.ws.run_dir / ".nextflow.log"
    try:
        with path.open("rb") as fh:
            return session_from_log(fh.read(LOG_HEAD_BYTES).decode("utf-8", "replace"))
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch(
    ctx: Context,
    pid: int,
    deadline_s: float = WATCH_DEADLINE_S,
    clock: Callable[[], float] = time.monotonic,
) -> str | None:
    """Poll .nextflow.log while process `pid` lives (at most `deadline_s`); record the session when seen."""
    start = clock()
    while True:
        session = from_log(ctx)
        if session is not None:
            record(ctx, session)
            return session
        if not _alive(pid) or clock() - start > deadline_s:
            log.info("no Nextflow session seen in .nextflow.log; finish looks again")
            return None
        ctx.sleep(WATCH_INTERVAL_S)
