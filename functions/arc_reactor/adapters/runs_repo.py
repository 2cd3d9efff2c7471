"""Run records in PostgreSQL. Every status change goes through `transition`: one statement that locks the
row, applies a conditional UPDATE (status IN allowed predecessors) and writes the run_events row."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import (
    BigInteger,
    Select,
    TextClause,
    and_,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from arc_reactor.adapters.tables import ACTIVE_SQL, among, run_events, run_labels, runs, signing_keys
from arc_reactor.core.run_record import RunRecord
from arc_reactor.core.status import (
    PREDECESSORS,
    TERMINAL,
    TIMESTAMP_COLUMN,
    RunStatus,
    is_terminal_conflict,
    never_applies,
)
from arc_reactor.errors import NotFound, TransientError

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

# Columns a transition may set besides status and timestamps (whitelist: names go into SQL text).
TRANSITION_FIELDS = frozenset(
    {
        "error_code",
        "error_message",
        "error_task",
        "exit_code",
        "metrics",
        "session_id",
        "batch_job_name",
        "batch_job_uid",
    }
)
_JSON_FIELDS = frozenset({"metrics"})


Row = dict[str, Any]  # a run_events row (or a few columns of runs), column name -> value


@dataclass(frozen=True)
class TransitionResult:
    """What a transition did: applied, or why not (duplicate, stale, or a conflict with a terminal state)."""

    applied: bool
    previous: RunStatus | None
    current: RunStatus
    conflict: bool = False


class StaleConnection(TransientError):
    """A pooled connection the database had closed (a restart, an idle timeout): found on its first use,
    before anything was applied, and dropped from the pool. The engine has no pre-ping (a round trip on
    every checkout), so the functions marked @_fresh_on_stale try once more on a new connection."""


def _fresh_on_stale(fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` again, once, when its pooled connection turned out to be dead."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except StaleConnection:
            log.info("a pooled database connection was closed; retrying on a new one")
            return fn(*args, **kwargs)

    return wrapper


def _autocommit(conn: Connection) -> bool:
    """True for connections of an autocommit engine (db.get_engine's): a statement commits itself."""
    return bool(getattr(conn.connection.dbapi_connection, "autocommit", False))


@contextmanager
def _statement(engine: Engine) -> Iterator[Connection]:
    """A connection for one write statement: on an autocommit engine it commits itself, with no BEGIN or
    COMMIT round trips; on any other engine it runs in a transaction."""
    with _reading(engine) as conn:
        if _autocommit(conn):
            yield conn
        else:
            with conn.begin():
                yield conn


@contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    """A connection whose statements commit together or not at all, on any engine."""
    with _reading(engine) as conn:
        if not _autocommit(conn):
            with conn.begin():
                yield conn
            return
        conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(Exception):  # a broken connection has nothing left to roll back
                conn.exec_driver_sql("ROLLBACK")
            raise
        conn.exec_driver_sql("COMMIT")


@contextmanager
def _db_errors() -> Iterator[None]:
    """Turn connection-level failures into TransientError (the event is redelivered); others propagate."""
    try:
        yield
    except PoolTimeout as exc:
        raise TransientError(f"database unavailable: {exc.__class__.__name__}: {exc}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StaleConnection(f"database connection lost: {exc}") from exc
        if isinstance(exc, OperationalError | InterfaceError):
            raise TransientError(f"database unavailable: {exc.__class__.__name__}: {exc}") from exc
        raise
    except OSError as exc:
        # pg8000 raises socket errors (a reset or broken pipe while connecting) unwrapped: SQLAlchemy only
        # wraps the driver's own exception classes.
        raise TransientError(f"database unreachable: {exc.__class__.__name__}: {exc}") from exc


@contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    """A connection for read queries, with connection failures as TransientError."""
    with _db_errors(), engine.connect() as conn:  # the one place reads open a connection
        yield conn


@_fresh_on_stale
def insert_run(engine: Engine, values: Mapping[str, Any], source: str = "submit") -> tuple[RunRecord, bool]:
    """Insert a pending run; return (row, created). A run with the same source object generation or
    idempotency key already there is returned with created=False: at-least-once delivery is a no-op."""
    vals = dict(values)
    if vals.setdefault("status", RunStatus.PENDING.value) != RunStatus.PENDING.value:
        # Every other status is reached through the status machine (services/status_change.py), with its
        # event row and log line; a run is never born failed or running.
        raise ValueError(f"a run is inserted pending, not {vals['status']}")
    # One statement (one round trip on an autocommit engine): the INSERT and, only when it inserted, the
    # run's first event, through a data-modifying CTE; PostgreSQL runs both or neither.
    ins = pg_insert(runs).values(**vals).on_conflict_do_nothing().returning(*runs.c).cte("ins")
    created_event = insert(run_events).from_select(
        ["run_id", "kind", "source", "from_status", "to_status", "detail"],
        select(
            ins.c.id,
            literal("transition"),
            literal(source),
            literal(None, run_events.c.from_status.type),
            ins.c.status,
            literal({"reason": "created"}, run_events.c.detail.type),
        ),
    )
    stmt = select(ins).add_cte(created_event.cte("created_event"))
    with _statement(engine) as conn:
        row = conn.execute(stmt).mappings().first()
    if row is not None:
        return RunRecord.from_row(row), True
    with _reading(engine) as conn:
        existing = conn.execute(select(runs).where(_same_source(vals))).mappings().first()
    if existing is None:  # the conflict was on the primary key: a caller bug, not a duplicate
        raise IntegrityError("run id collision", params=None, orig=Exception(vals.get("id")))
    return RunRecord.from_row(existing), False


def _same_source(vals: Mapping[str, Any]) -> Any:
    clauses = []
    if vals.get("source_object") is not None:
        clauses.append(
            and_(
                runs.c.source_bucket == vals.get("source_bucket"),
                runs.c.source_object == vals.get("source_object"),
                runs.c.source_generation == vals.get("source_generation"),
            )
        )
    if vals.get("idempotency_key") is not None:
        clauses.append(runs.c.idempotency_key == vals["idempotency_key"])
    return or_(*clauses) if clauses else runs.c.id == vals.get("id")


_TRANSITION_SQL = """
WITH prev AS (SELECT id, status FROM runs WHERE id = :run_id FOR UPDATE),
upd AS (
    UPDATE runs SET {sets}
    FROM prev WHERE runs.id = prev.id AND prev.status IN ({preds})
    RETURNING prev.status AS from_status
),
ev AS (
    INSERT INTO run_events (run_id, kind, source, from_status, to_status, detail)
    SELECT :run_id, 'transition', :source, upd.from_status, :target, CAST(:detail AS jsonb) FROM upd
    RETURNING id
)
SELECT prev.status AS current, (SELECT from_status FROM upd) AS applied_from FROM prev
"""

# The same change, locking the row only when the statement's snapshot shows a status it may apply from
# (FOR UPDATE re-checks that condition on the newest version once the lock is had). Most deliveries are
# duplicates of a change already made; for them this is a read, with no row lock to write and no commit
# to flush. Its "not applied" answer is final only when no allowed predecessor of the target can be reached
# from the snapshot's status (a concurrent writer can only have moved the run forward from there);
# otherwise transition() asks again with _TRANSITION_SQL, which locks the row whatever its status.
_TRANSITION_FAST_SQL = """
WITH cur AS (SELECT status FROM runs WHERE id = :run_id),
prev AS (SELECT id, status FROM runs WHERE id = :run_id AND status IN ({preds}) FOR UPDATE),
upd AS (
    UPDATE runs SET {sets}
    FROM prev WHERE runs.id = prev.id
    RETURNING prev.status AS from_status
),
ev AS (
    INSERT INTO run_events (run_id, kind, source, from_status, to_status, detail)
    SELECT :run_id, 'transition', :source, upd.from_status, :target, CAST(:detail AS jsonb) FROM upd
    RETURNING id
)
SELECT cur.status AS current, (SELECT from_status FROM upd) AS applied_from FROM cur
"""


# (snapshot status, target) pairs whose "not applied" the fast statement may answer on its own.
_FINAL_WITHOUT_LOCK = frozenset(
    (status, target) for status in RunStatus for target in RunStatus if never_applies(status, target)
)

# Taking the run's row lock first makes "insert unless already recorded" safe under concurrency.
_LOCK_RUN_SQL = "SELECT 1 FROM runs WHERE id = :run_id FOR UPDATE"

_CONFLICT_SQL = """
INSERT INTO run_events (run_id, kind, source, from_status, to_status, detail)
SELECT :run_id, 'conflict', :source, :current, :target, CAST(:detail AS jsonb)
WHERE NOT EXISTS (
    SELECT 1 FROM run_events
    WHERE run_id = :run_id AND kind = 'conflict' AND source = :source AND to_status = :target
)
"""


@functools.lru_cache(maxsize=256)
def _sql(statement: str) -> TextClause:
    """The clause of a SQL text built at run time (a transition's shape: its target, fields and the
    predecessors' count), made once: text() parses the text for its parameters on every call."""
    return text(statement)


@_fresh_on_stale
def transition(
    engine: Engine,
    run_id: str,
    target: RunStatus,
    source: str,
    *,
    fields: Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> TransitionResult:
    """Move a run to `target` if the status machine allows it from where it is now.

    A duplicate or stale change is a no-op. A different terminal outcome for a run already terminal is
    refused and recorded once as a `conflict` event with both sides (first terminal state wins)."""
    fields = dict(fields or {})
    unknown = set(fields) - TRANSITION_FIELDS
    if unknown:
        raise ValueError(f"transition cannot set {sorted(unknown)}")
    preds = sorted(PREDECESSORS[target])
    params: dict[str, Any] = {
        "run_id": run_id,
        "source": source,
        "target": target.value,
        "detail": json.dumps(dict(detail or {}), default=str),
    }
    sets = ["status = :target", "updated_at = now()"]
    ts_col = TIMESTAMP_COLUMN.get(target)
    if ts_col:
        sets.append(f"{ts_col} = COALESCE(runs.{ts_col}, CAST(:at AS timestamptz), now())")
        params["at"] = at
    for name, value in fields.items():
        if value is None:
            continue
        if name in _JSON_FIELDS:
            sets.append(f"{name} = CAST(:f_{name} AS jsonb)")
            params[f"f_{name}"] = json.dumps(value)
        else:
            sets.append(f"{name} = :f_{name}")
            params[f"f_{name}"] = value
    pred_names = []
    for i, p in enumerate(preds):
        params[f"p{i}"] = p.value
        pred_names.append(f":p{i}")
    # One round trip whether or not the change applies; a duplicate (most deliveries) is a read.
    parts = {"sets": ", ".join(sets), "preds": ", ".join(pred_names) or "NULL"}
    with _statement(engine) as conn:  # one statement: the UPDATE, its event row and the answer
        row = conn.execute(_sql(_TRANSITION_FAST_SQL.format(**parts)), params).first()
        if row is not None and row[1] is None and (RunStatus(row[0]), target) not in _FINAL_WITHOUT_LOCK:
            row = conn.execute(_sql(_TRANSITION_SQL.format(**parts)), params).first()
    if row is None:
        raise NotFound(f"run {run_id} does not exist")
    if row[1] is not None:
        return TransitionResult(True, RunStatus(row[1]), target)
    current = RunStatus(row[0])
    conflict = is_terminal_conflict(current, target)
    if conflict:
        _record_conflict(engine, run_id, target, source, {**params, "current": current.value})
    return TransitionResult(False, current, current, conflict)


def _record_conflict(
    engine: Engine, run_id: str, target: RunStatus, source: str, params: dict[str, Any]
) -> None:
    """Record a terminal disagreement once per source and outcome (the first terminal state stays)."""
    with _transaction(engine) as conn:
        conn.execute(text(_LOCK_RUN_SQL), params)
        conn.execute(text(_CONFLICT_SQL), params)
    log.warning(
        "terminal conflict on run %s: is %s, %s says %s (first terminal state wins)",
        run_id,
        params["current"],
        source,
        target.value,
        extra={"run_id": run_id, "event": "status_conflict"},
    )


def _records(result: CursorResult[Any]) -> list[RunRecord]:
    """The runs of a result, in its order."""
    return RunRecord.from_rows(list(result.keys()), result)


@_fresh_on_stale
def get_run(engine: Engine, run_id: str) -> RunRecord:
    """The run, or NotFound."""
    with _reading(engine) as conn:
        row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
    if row is None:
        raise NotFound(f"run {run_id} does not exist")
    return RunRecord.from_row(row)


def get_runs(engine: Engine, run_ids: Collection[str]) -> dict[str, RunRecord]:
    """The runs of these ids that exist, by id, in one statement."""
    if not run_ids:
        return {}
    with _reading(engine) as conn:
        rows = conn.execute(select(runs).where(among(runs.c.id, set(run_ids)))).mappings()
        return {row["id"]: RunRecord.from_row(row) for row in rows}


@dataclass(frozen=True)
class RunFilter:
    """GET /runs filters; every given one must match. Labels match when the run has each key=value."""

    statuses: tuple[str, ...] = ()
    pipeline: str | None = None
    submitter: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    created_after: datetime | None = None  # strictly after
    created_before: datetime | None = None  # strictly before
    id_prefix: str | None = None  # [0-9a-z] only (the API checks): LIKE needs no escaping
    name: str | None = None

    def clauses(self) -> list[Any]:
        """The WHERE clauses of this filter."""
        out: list[Any] = []
        if self.statuses:
            out.append(runs.c.status.in_(self.statuses))
        if self.pipeline is not None:
            out.append(runs.c.pipeline == self.pipeline)
        if self.submitter is not None:
            out.append(runs.c.submitter == self.submitter)
        if self.id_prefix is not None:
            out.append(runs.c.id.like(self.id_prefix + "%"))  # ix_runs_id_pattern (text_pattern_ops)
        if self.name is not None:
            out.append(runs.c.name == self.name)
        if self.labels:  # jsonb containment (list_runs reads the candidates from run_labels, in order)
            out.append(runs.c.labels.contains(dict(self.labels)))
        if self.created_after is not None:
            out.append(runs.c.created_at > self.created_after)
        if self.created_before is not None:
            out.append(runs.c.created_at < self.created_before)
        return out


@_fresh_on_stale
def list_runs(
    engine: Engine,
    *,
    limit: int = 50,
    before: tuple[datetime, str] | None = None,
    where: RunFilter | None = None,
    offset: int = 0,
) -> list[RunRecord]:
    """Newest first, keyset-paginated by (created_at, id) strictly before `before`.

    `offset` exists only to compare with keyset paging (bench/list_runs.py); the API never uses it."""
    stmt = list_stmt(where or RunFilter(), limit, before, offset)
    with _reading(engine) as conn:
        return _records(conn.execute(stmt))


def list_stmt(
    where: RunFilter, limit: int, before: tuple[datetime, str] | None = None, offset: int = 0
) -> Select[Any]:
    """list_runs' query. With a label filter the page is read in order from run_labels' primary key: the
    first label's runs, newest first, each then checked against the rest of the filter. (Label values are
    strings, the bundle check says so, so a run_labels row matches exactly when `labels @>` would; leaving
    that test out for the driving label also keeps PostgreSQL's fixed estimate for `@>` out of the plan.)"""
    created, rid = runs.c.created_at, runs.c.id
    stmt = select(runs)
    if where.labels:
        (key, value), rest = where.labels[0], where.labels[1:]
        stmt = stmt.join(run_labels, run_labels.c.run_id == runs.c.id).where(
            run_labels.c.key == key, run_labels.c.value == value
        )
        created, rid = run_labels.c.created_at, run_labels.c.run_id  # equal to the run's own
        where = dataclasses.replace(where, labels=rest)
    clauses = where.clauses()
    if before is not None:
        # A row comparison, so PostgreSQL turns it into one index range bound (an OR would not be).
        position = tuple_(literal(before[0], runs.c.created_at.type), literal(before[1], runs.c.id.type))
        clauses.append(tuple_(created, rid) < position)
    stmt = stmt.where(*clauses).order_by(created.desc(), rid.desc()).limit(limit)
    return stmt.offset(offset) if offset else stmt


@_fresh_on_stale
def list_children(engine: Engine, run_id: str, limit: int = 100) -> list[RunRecord]:
    """Runs whose parent is `run_id` (its recoveries), oldest first."""
    stmt = select(runs).where(runs.c.parent_run_id == run_id).order_by(runs.c.created_at).limit(limit)
    with _reading(engine) as conn:
        return _records(conn.execute(stmt))


@_fresh_on_stale
def active_in_lineage(engine: Engine, lineage_id: str) -> list[Row]:
    """Runs of a lineage (a run and its recoveries) that have not ended: they share one work dir."""
    with _reading(engine) as conn:
        return [dict(r) for r in conn.execute(lineage_stmt(lineage_id)).mappings()]


def lineage_stmt(lineage_id: str) -> Select[Any]:
    """active_in_lineage's query: a few probes of ix_runs_lineage, however long the ledger."""
    return select(runs.c.id, runs.c.status).where(
        runs.c.lineage_id == lineage_id, runs.c.status.not_in([s.value for s in TERMINAL])
    )


@_fresh_on_stale
def find_by_idempotency_key(engine: Engine, key: str) -> RunRecord | None:
    """The run created with this idempotency key, if any."""
    with _reading(engine) as conn:
        row = conn.execute(select(runs).where(runs.c.idempotency_key == key)).mappings().first()
    return RunRecord.from_row(row) if row is not None else None


@_fresh_on_stale
def recent_events(engine: Engine, run_id: str, limit: int = 50) -> list[Row]:
    """A run's last `limit` events, in order."""
    stmt = (
        select(run_events).where(run_events.c.run_id == run_id).order_by(run_events.c.id.desc()).limit(limit)
    )
    with _reading(engine) as conn:
        rows = [dict(r) for r in conn.execute(stmt).mappings()]
    return rows[::-1]


@_fresh_on_stale
def notes_of(engine: Engine, run_id: str, reason: str, limit: int = 1000) -> list[Row]:
    """A run's note events with detail.reason `reason` (e.g. the head job's retries), in order."""
    return notes_of_runs(engine, [run_id], reason, limit).get(run_id, [])


def notes_of_runs(
    engine: Engine, run_ids: Sequence[str], reason: str, limit: int = 1000
) -> dict[str, list[Row]]:
    """notes_of for several runs in one statement (at most `limit` notes each), by run id."""
    if not run_ids:
        return {}
    numbered = (
        select(
            run_events,
            func.row_number().over(partition_by=run_events.c.run_id, order_by=run_events.c.id).label("n"),
        )
        .where(
            among(run_events.c.run_id, run_ids),
            run_events.c.kind == "note",
            run_events.c.detail["reason"].astext == reason,
        )
        .subquery()
    )
    stmt = (
        select(*(numbered.c[c.name] for c in run_events.c))
        .where(numbered.c.n <= limit)
        .order_by(numbered.c.run_id, numbered.c.id)
    )
    found: dict[str, list[Row]] = {}
    with _reading(engine) as conn:
        for r in conn.execute(stmt).mappings():
            found.setdefault(r["run_id"], []).append(dict(r))
    return found


@dataclass(frozen=True)
class EventPoll:
    """What one poll of run_events found: new events in id order, and the table's highest event id in the
    poll's snapshot (`top`, None when it is empty), where the next poll's window can start."""

    rows: list[Row]
    top: int | None
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)  # run id -> a newer progress document
    progress_top: int | None = None  # the highest progress_seq in the poll's snapshot


@_fresh_on_stale
def poll_events(
    engine: Engine,
    fresh: Mapping[str, int],
    watched: Collection[str] = (),
    since: int | None = None,
    *,
    limit: int = 1000,
    progress_after: Mapping[str, int] | None = None,
    progress_since: int | None = None,
) -> EventPoll:
    """The SSE hub's one statement per interval: new events of the runs a process watches, in id order.

    Two ways in, merged: each run in `fresh` (run id -> last event id it was given) is read after its own
    cursor, a probe of ix_run_events_run per run (for runs that just got a watcher, or all of them now and
    then); the runs in `watched` are read from the events added to the whole table after event `since`, one
    range of the primary key, so a poll costs what the table gained since the window began however many
    runs are watched. The ids go in as one comma-joined text each (pg8000 encodes an array parameter
    element by element in Python, which was most of a 200-run poll's cost), split once into a hashed set
    (as `= ANY(string_to_array(...))` in a prepared statement's generic plan, the text was split again for
    every row of the window).

    The same statement reads runs' progress documents the same two ways: each run in `progress_after` (run
    id -> the `instant` of the last one given) by its primary key when its document is newer, and the runs
    in `watched` whose progress was written after `progress_since` (a range of ix_runs_progress_seq)."""
    progress_after = progress_after or {}
    for run_id in (*fresh, *watched, *progress_after):
        if "," in run_id:
            raise ValueError(f"{run_id!r} is not a run id")
    params = {
        "fresh_ids": ",".join(fresh),
        "fresh_afters": ",".join(str(int(after)) for after in fresh.values()),
        "ids": ",".join(watched),
        "since": since,
        "limit": limit,
        "p_ids": ",".join(progress_after),
        "p_afters": ",".join(str(int(after)) for after in progress_after.values()),
        "p_since": progress_since,
    }
    with _reading(engine) as conn:
        found = conn.execute(_POLL_EVENTS, params).mappings().all()
    rows = [{c: r[c] for c in _EVENT_COLUMNS} for r in found if r["id"] is not None]
    head = found[0] if found else {}
    return EventPoll(rows, head.get("top"), head.get("progress") or {}, head.get("ptop"))


def events_after(engine: Engine, cursors: Mapping[str, int], limit: int = 1000) -> list[Row]:
    """Events of several runs in id order, each run's after its own cursor (run id -> last event id seen)."""
    return poll_events(engine, cursors, limit=limit).rows if cursors else []


_EVENT_COLUMNS = tuple(run_events.c.keys())
_POLL_EVENTS = text(
    """
    SELECT h.top, h.ptop, h.progress, e.* FROM (
        SELECT (SELECT max(id) FROM run_events) AS top,
               (SELECT max(progress_seq) FROM runs WHERE progress_seq IS NOT NULL) AS ptop,
               (SELECT json_object_agg(u.id, u.progress) FROM (
                    SELECT r.id, r.progress FROM unnest(
                        string_to_array(:p_ids, ','), CAST(string_to_array(:p_afters, ',') AS bigint[])
                    ) AS p(run_id, after_instant)
                    JOIN runs r ON r.id = p.run_id
                    WHERE CAST(r.progress ->> 'instant' AS bigint) > p.after_instant
                    UNION ALL
                    -- the window (an index-only range of ix_runs_progress_seq) intersected with the watched
                    -- runs by a hashed set operation, once (an InitPlan); then only those rows, by primary
                    -- key. A run in both parts comes twice, with the same document.
                    SELECT r.id, r.progress FROM runs r WHERE r.id = ANY(ARRAY(
                        SELECT id FROM runs WHERE progress_seq > CAST(:p_since AS bigint)
                        INTERSECT
                        SELECT unnest(string_to_array(:ids, ','))
                    ))
               ) AS u) AS progress
    ) AS h
    LEFT JOIN LATERAL (
        SELECT * FROM (
            SELECT c.* FROM unnest(
                string_to_array(:fresh_ids, ','), CAST(string_to_array(:fresh_afters, ',') AS bigint[])
            ) AS w(run_id, after_id)
            CROSS JOIN LATERAL (
                SELECT * FROM run_events ev WHERE ev.run_id = w.run_id AND ev.id > w.after_id
                ORDER BY ev.id LIMIT :limit
            ) AS c
            UNION
            SELECT ev.* FROM run_events ev
            WHERE ev.id > CAST(:since AS bigint)
              AND ev.run_id IN (SELECT unnest(string_to_array(:ids, ',')))
        ) AS u
        ORDER BY u.id LIMIT :limit
    ) AS e ON h.top IS NOT NULL
    ORDER BY e.id
    """
)


@_fresh_on_stale
def list_events(engine: Engine, run_id: str, after_id: int = 0, limit: int = 500) -> list[Row]:
    """A run's events in order, after event id `after_id`."""
    stmt = (
        select(run_events)
        .where(run_events.c.run_id == run_id, run_events.c.id > after_id)
        .order_by(run_events.c.id)
        .limit(limit)
    )
    with _reading(engine) as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def add_note(engine: Engine, run_id: str, source: str, detail: Mapping[str, Any]) -> None:
    """Record something about a run that is not a status change (e.g. a Batch retry)."""
    with _statement(engine) as conn:
        conn.execute(
            insert(run_events).values(run_id=run_id, kind="note", source=source, detail=dict(detail))
        )


_NOTE_ONCE_SQL = """
INSERT INTO run_events (run_id, kind, source, detail)
SELECT :run_id, 'note', :source, CAST(:detail AS jsonb)
WHERE NOT EXISTS (
    SELECT 1 FROM run_events WHERE run_id = :run_id AND kind = 'note' AND detail->>'key' = :key
)
"""


def add_note_once(engine: Engine, run_id: str, source: str, key: str, detail: Mapping[str, Any]) -> bool:
    """Record a note unless one with the same `key` exists (duplicate notifications); True when recorded.
    The run's row lock serializes concurrent writers, so two copies of one event cannot both record it."""
    params = {
        "run_id": run_id,
        "source": source,
        "key": key,
        "detail": json.dumps({**detail, "key": key}, default=str),
    }
    with _transaction(engine) as conn:
        if conn.execute(text(_LOCK_RUN_SQL), params).first() is None:
            raise NotFound(f"run {run_id} does not exist")
        return bool(conn.execute(text(_NOTE_ONCE_SQL), params).rowcount)


@_fresh_on_stale
def status_counts(engine: Engine) -> dict[tuple[str, str | None], int]:
    """Runs per (status, error code of a failed run): one GROUP BY. For GA4GH WES's system_state_counts."""
    stmt = select(runs.c.status, runs.c.error_code, func.count()).group_by(runs.c.status, runs.c.error_code)
    out: dict[tuple[str, str | None], int] = {}
    with _reading(engine) as conn:
        for status, code, n in conn.execute(stmt):
            key = (str(status), code if status == "failed" else None)
            out[key] = out.get(key, 0) + int(n)
    return out


@_fresh_on_stale
def signing_key(engine: Engine, name: str) -> bytes:
    """One of the deployment's own secrets (migration 0010 made them); KeyError when there is none."""
    with _reading(engine) as conn:
        found = conn.execute(select(signing_keys.c.secret).where(signing_keys.c.name == name)).scalar()
    if found is None:
        raise KeyError(f"no signing key {name!r}: is the database migrated (alembic upgrade head)?")
    return bytes(found)


def set_progress(engine: Engine, run_id: str, progress: Mapping[str, Any], instant: int) -> bool:
    """Keep the engine's latest progress snapshot on the run: one taken at `instant` (epoch ms) replaces
    the stored one only when it is newer, so a late or repeated report never turns the counts back. True
    when stored."""
    doc = {**progress, "instant": instant}
    stored = cast(runs.c.progress["instant"].astext, BigInteger)  # epoch ms do not fit an integer
    newer = or_(runs.c.progress.is_(None), stored < literal(instant, BigInteger))
    with _transaction(engine) as conn:
        seq = text("nextval('run_progress_seq')")
        done = conn.execute(
            runs.update().where(runs.c.id == run_id, newer).values(progress=doc, progress_seq=seq)
        )
    return bool(done.rowcount)


def record_job_name(engine: Engine, run_id: str, job_name: str, job_uid: str | None = None) -> None:
    """Store the run's Batch job name (and uid) if it has none yet, whatever the run's status."""
    with _transaction(engine) as conn:
        conn.execute(
            runs.update()
            .where(runs.c.id == run_id, runs.c.batch_job_name.is_(None))
            .values(batch_job_name=job_name, updated_at=text("now()"))
        )
        if job_uid:
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id, runs.c.batch_job_uid.is_(None))
                .values(batch_job_uid=job_uid)
            )


def record_upload_failures(engine: Engine, run_id: str, failed: list[str], attempt: int) -> None:
    """Say on the run that `failed` (names under logs/ or results/) could not be uploaded, with a note event
    naming them; the count is the latest attempt's, whatever the run's status."""
    with _transaction(engine) as conn:
        conn.execute(runs.update().where(runs.c.id == run_id).values(upload_failures=len(failed)))
        conn.execute(
            insert(run_events).values(
                run_id=run_id,
                kind="note",
                source="hook",
                detail={
                    "reason": "upload_failed",
                    "attempt": attempt,
                    "files": failed[:50],
                    "count": len(failed),
                },
            )
        )


@_fresh_on_stale
def run_id_for_job_uid(engine: Engine, job_uid: str) -> str | None:
    """The run whose orchestrator job has this Batch uid (recorded at creation), if any."""
    with _reading(engine) as conn:
        return conn.execute(select(runs.c.id).where(runs.c.batch_job_uid == job_uid)).scalar()


@_fresh_on_stale
def stale_runs(engine: Engine, older_than: datetime, limit: int) -> list[RunRecord]:
    """Runs in pending/submitted/running/cancelling not updated since `older_than`, oldest first, at most
    `limit` (a pending run that old lost its submission: the sweeper finishes it)."""
    with _reading(engine) as conn:
        return _records(conn.execute(stale_stmt(older_than, limit)))


def stale_stmt(older_than: datetime, limit: int) -> Select[Any]:
    """stale_runs' query: the oldest entries of the partial index ix_runs_active_updated. The status list
    is written out as literals so PostgreSQL can prove the index's predicate from it under any plan."""
    return (
        select(runs)
        .where(text(ACTIVE_SQL), runs.c.updated_at < older_than)
        .order_by(runs.c.updated_at)
        .limit(limit)
    )


class PostgresRunStore:
    """The run store on PostgreSQL: this module's functions bound to one engine (services/run_store.py is
    the port; tests have an in-memory store of the same behaviour, held to it by a shared contract test)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert_run(self, values: Mapping[str, Any], source: str = "submit") -> tuple[RunRecord, bool]:
        """See insert_run."""
        return insert_run(self.engine, values, source)

    def get_run(self, run_id: str) -> RunRecord:
        """See get_run."""
        return get_run(self.engine, run_id)

    def get_runs(self, run_ids: Collection[str]) -> dict[str, RunRecord]:
        """See get_runs."""
        return get_runs(self.engine, run_ids)

    def transition(
        self,
        run_id: str,
        target: RunStatus,
        source: str,
        *,
        fields: Mapping[str, Any] | None = None,
        detail: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> TransitionResult:
        """See transition."""
        return transition(self.engine, run_id, target, source, fields=fields, detail=detail, at=at)

    def add_note(self, run_id: str, source: str, detail: Mapping[str, Any]) -> None:
        """See add_note."""
        add_note(self.engine, run_id, source, detail)

    def add_note_once(self, run_id: str, source: str, key: str, detail: Mapping[str, Any]) -> bool:
        """See add_note_once."""
        return add_note_once(self.engine, run_id, source, key, detail)

    def record_job_name(self, run_id: str, job_name: str, job_uid: str | None = None) -> None:
        """See record_job_name."""
        record_job_name(self.engine, run_id, job_name, job_uid)

    def run_id_for_job_uid(self, job_uid: str) -> str | None:
        """See run_id_for_job_uid."""
        return run_id_for_job_uid(self.engine, job_uid)

    def active_in_lineage(self, lineage_id: str) -> list[Row]:
        """See active_in_lineage."""
        return active_in_lineage(self.engine, lineage_id)

    def find_by_idempotency_key(self, key: str) -> RunRecord | None:
        """See find_by_idempotency_key."""
        return find_by_idempotency_key(self.engine, key)

    def stale_runs(self, older_than: datetime, limit: int) -> list[RunRecord]:
        """See stale_runs."""
        return stale_runs(self.engine, older_than, limit)

    def list_events(self, run_id: str, after_id: int = 0, limit: int = 500) -> list[Row]:
        """See list_events."""
        return list_events(self.engine, run_id, after_id, limit)
