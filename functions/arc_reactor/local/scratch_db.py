"""A database of our own for tests and benchmarks: created on the given server, dropped afterwards.

Given a DATABASE_URL from outside (a developer's or CI's PostgreSQL), the tests and benchmarks never touch
the database it names: they CREATE a new one beside it (`arc_scratch_<random>`), migrate it, and DROP it when
done. When the server refuses to create one, they refuse to run, with a message saying why; they never fall
back to clearing a database they did not create.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

PREFIX = "arc_scratch_"


class ScratchDatabaseRefused(RuntimeError):
    """The server at DATABASE_URL would not let us create a database of our own."""


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A URL of a new, empty database on the server of `server_url`; the database is dropped on exit."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    base = make_url(server_url)
    name = PREFIX + secrets.token_hex(6)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")  # CREATE DATABASE cannot run in a transaction
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except DBAPIError as exc:
        admin.dispose()
        shown = base.render_as_string(hide_password=True)
        raise ScratchDatabaseRefused(
            f"DATABASE_URL={shown}: cannot create a scratch database there ({exc.orig}); the tests and "
            "benchmarks only ever use a database they create, so give a URL whose user may CREATE DATABASE"
        ) from exc
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        from arc_reactor.adapters.db import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
