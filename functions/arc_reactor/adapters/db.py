"""Database connections: DATABASE_URL, Cloud SQL through the Python connector (IAM auth), or an embedded
PostgreSQL started with pgserver. Pools are small: a serverless instance handles one request at a time."""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import tempfile
import threading
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from arc_reactor.settings import Settings

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_pg_servers: dict[Path, Any] = {}  # keep pgserver handles alive for the life of the process


def embedded_postgres_url(data_dir: Path, *, delete_on_exit: bool = False) -> str:
    """Start (or join) the embedded PostgreSQL under `data_dir`; return its pg8000 URL (unix socket).

    The server stops when the last process that started or joined it exits (pgserver tracks them); with
    `delete_on_exit` (a benchmark's throwaway database) its data folder is deleted then too."""
    import pgserver  # local stack only: never needed in the cloud

    data_dir = _reachable_pg_dir(data_dir.expanduser().resolve())
    with _lock:
        srv = _pg_servers.get(data_dir)
        if srv is None:
            data_dir.parent.mkdir(parents=True, exist_ok=True)
            mode = "delete" if delete_on_exit else "stop"
            srv = pgserver.get_server(data_dir, cleanup_mode=mode)  # type: ignore[attr-defined]
            _pg_servers[data_dir] = srv
    info = srv.get_postmaster_info()
    return f"postgresql+pg8000://postgres@/postgres?unix_sock={info.socket_dir}/.s.PGSQL.{info.port}"


def stop_embedded_postgres(data_dir: Path) -> bool:
    """Stop the embedded PostgreSQL this process started or joined under `data_dir`, now rather than at
    exit, when no other process still uses it (pgserver counts them). True when this process had it."""
    data_dir = _reachable_pg_dir(data_dir.expanduser().resolve())
    with _lock:
        srv = _pg_servers.pop(data_dir, None)
    if srv is None:
        return False
    dispose_engines()  # close our connections first: a fast shutdown would cut them anyway
    srv.cleanup()  # in "stop" mode: stops the server if this was its last user; never deletes data
    return True


def _reachable_pg_dir(data_dir: Path) -> Path:
    """As root, pgserver runs PostgreSQL as the user `pgserver`, which must be able to reach the data dir.
    When an ancestor folder is closed to others (e.g. /root), use a folder under the temp dir instead."""
    if os.geteuid() != 0:
        return data_dir
    for parent in data_dir.parents:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
            alt = Path(tempfile.gettempdir()) / f"arc-reactor-{digest}" / data_dir.name
            alt.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            return alt
    return data_dir


def _cloudsql_creator(settings: Settings) -> Any:
    """A connection factory for Cloud SQL. The Connector (which looks up credentials) is built on the first
    connection, not when the engine is made, so building an engine never touches the network."""
    connectors: list[Any] = []

    def connect() -> Any:
        with _lock:
            if not connectors:
                from google.cloud.sql.connector import Connector, IPTypes

                connectors.append(Connector(refresh_strategy="lazy", ip_type=IPTypes.PRIVATE))
        return connectors[0].connect(
            settings.cloudsql_instance,
            "pg8000",
            user=settings.db_iam_user,
            db=settings.db_name,
            enable_iam_auth=True,
        )

    return connect


def database_url(settings: Settings) -> str:
    """The URL the engine will use; for Cloud SQL a placeholder (the connector makes the connections)."""
    if settings.database_url:
        return settings.database_url
    if settings.cloudsql_instance:
        return "postgresql+pg8000://"
    return embedded_postgres_url(settings.pgserver_dir)


def get_engine(settings: Settings) -> Engine:
    """One pooled engine per database URL for the life of the process."""
    url = database_url(settings)
    key = url if not settings.cloudsql_instance or settings.database_url else settings.cloudsql_instance
    with _lock:
        engine = _engines.get(key)
        if engine is not None:
            return engine
    kwargs: dict[str, Any] = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_recycle": 1800,
        "pool_timeout": 10,
        # Round trips are the cost of the hot paths (reconcile, GET /runs, the SSE poll): autocommit, so a
        # single statement needs no BEGIN and COMMIT (runs_repo opens transactions where it needs several),
        # and no pre-ping on checkout (runs_repo retries once on a connection the database had closed).
        "isolation_level": "AUTOCOMMIT",
        "pool_pre_ping": False,
    }
    if settings.cloudsql_instance and not settings.database_url:
        kwargs["creator"] = _cloudsql_creator(settings)
    engine = prepare_engine(create_engine(url, **kwargs))
    with _lock:
        return _engines.setdefault(key, engine)


_TIMESTAMPTZ_OID = 1184


def _parse_timestamptz(text: str) -> Any:
    """pg8000's own parser uses strptime (~6 us); a page of runs holds hundreds of timestamps."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # BC dates, infinity, years past 9999: pg8000 knows what to do with them
        from pg8000.converters import timestamptz_in

        return timestamptz_in(text)


def cache_paramstyle_conversion() -> None:
    """Convert each distinct SQL text from the DB-API's `%s` placeholders to PostgreSQL's `$n` once per
    process, not on every execute. pg8000 does it with a character-by-character Python scanner (about 0.8
    ms for the transition's statement, 8% of a reconcile; bench/reconcile.py); for the `format` style the
    result depends only on the text (the arguments pass through unchanged), so it is cached. Other styles
    keep pg8000's own path. Idempotent; applied by prepare_engine."""
    import pg8000.legacy

    original = pg8000.legacy.convert_paramstyle
    if getattr(original, "arc_cached", False):
        return

    @functools.lru_cache(maxsize=2048)
    def converted(query: str) -> str:
        return str(original("format", query, ())[0])

    def convert(style: str, query: str, args: Any) -> tuple[str, Any]:
        if style == "format":
            return converted(query), args
        return original(style, query, args)  # type: ignore[no-any-return]

    convert.arc_cached = True  # type: ignore[attr-defined]
    convert.original = original  # type: ignore[attr-defined]
    pg8000.legacy.convert_paramstyle = convert


PREPARED_PER_CONNECTION = 256  # statements each connection keeps prepared; the service has fewer texts


def prepare_statements_once() -> None:
    """Run each SQL text as a named prepared statement of its connection, kept for the connection's life:
    a text seen before is one round trip (Bind, Execute, Sync) with no parsing or planning, where pg8000's
    own path took three round trips (Parse, then Describe, then Bind and Execute, each waited for) and
    PostgreSQL planned the statement every time (0.15 ms for the transition, four times its execution;
    after five runs PostgreSQL settles on a generic plan when it is as good). A new text costs one more
    round trip, once per connection. At most PREPARED_PER_CONNECTION are kept (the least recently used is
    closed). A statement whose result shape a migration changed ("cached plan must not change result
    type") is prepared again: at once outside a transaction block, on its next run inside one. COPY (a
    `stream`) keeps pg8000's own path. Process-wide and idempotent; applied by prepare_engine."""
    from pg8000 import core

    original = core.CoreConnection.execute_unnamed
    if getattr(original, "arc_prepared", False):
        return

    def prepared(self: Any, key: tuple[str, tuple[int, ...]]) -> Any:
        """(statement name, result columns, their decoders) of the statement `key` (text, parameter
        types) on this connection."""
        cache: OrderedDict[tuple[str, tuple[int, ...]], Any] = self.__dict__.setdefault(
            "_arc_prepared", OrderedDict()
        )
        found = cache.get(key)
        if found is not None:
            cache.move_to_end(key)
            return found
        while len(cache) >= PREPARED_PER_CONNECTION:
            self.close_prepared_statement(cache.popitem(last=False)[1][0])
        found = cache[key] = tuple(self.prepare_statement(*key))
        return found

    def execute_unnamed(self: Any, statement: str, vals: Any = (), oids: Any = (), stream: Any = None) -> Any:
        if stream is not None:
            return original(self, statement, vals=vals, oids=oids, stream=stream)
        params = core.make_params(self.py_types, vals)  # a value it cannot send raises before any I/O
        key = (statement, tuple(oids or ()))
        name, columns, input_funcs = prepared(self, key)
        try:
            return self.execute_named(name, params, columns, input_funcs, statement)
        except core.DatabaseError as exc:
            detail = exc.args[0] if exc.args else None
            if not isinstance(detail, dict) or detail.get("C") != "0A000":
                raise
            # The table changed under the statement: the next run prepares it anew (the old one is left
            # to the connection's end, since a failed transaction block would refuse to close it), and
            # outside a transaction block this run is made again at once.
            self.__dict__["_arc_prepared"].pop(key, None)
            if self._transaction_status != core.IDLE:
                raise
            name, columns, input_funcs = prepared(self, key)
            return self.execute_named(name, params, columns, input_funcs, statement)

    execute_unnamed.arc_prepared = True  # type: ignore[attr-defined]
    execute_unnamed.original = original  # type: ignore[attr-defined]
    core.CoreConnection.execute_unnamed = execute_unnamed


def prepare_engine(engine: Engine, statement_timeout_ms: int | None = 30000) -> Engine:
    """Set up each new connection: bound every statement (a stuck query must not hold a function instance
    forever) and parse timestamptz with datetime.fromisoformat (same values, faster); and convert each
    statement's placeholders once (cache_paramstyle_conversion) and prepare it once per connection
    (prepare_statements_once)."""
    if engine.dialect.driver == "pg8000":
        cache_paramstyle_conversion()
        prepare_statements_once()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        register = getattr(dbapi_conn, "register_in_adapter", None)
        if register is not None:  # pg8000
            register(_TIMESTAMPTZ_OID, _parse_timestamptz)
        if statement_timeout_ms:
            cur = dbapi_conn.cursor()
            cur.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
            cur.close()
            dbapi_conn.commit()  # pg8000 opened a transaction; a later rollback would undo the SET

    return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests and shutdown)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
