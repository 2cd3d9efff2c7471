"""The suite never clears a database it did not create (local/scratch_db.py), on a real PostgreSQL."""

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from arc_reactor.local.scratch_db import PREFIX, ScratchDatabaseRefused, scratch_database

pytestmark = pytest.mark.integration


def _admin(database_url):
    return create_engine(database_url, isolation_level="AUTOCOMMIT")


def _databases(admin):
    with admin.connect() as conn:
        return {r[0] for r in conn.execute(text("SELECT datname FROM pg_database"))}


def test_a_scratch_database_leaves_the_named_one_alone_and_is_dropped(database_url):
    from arc_reactor.adapters import migrate

    admin = _admin(database_url)
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS precious"))
        conn.execute(text("CREATE DATABASE precious"))
    precious = make_url(database_url).set(database="precious").render_as_string(hide_password=False)
    keep = create_engine(precious)
    with keep.begin() as conn:
        conn.execute(text("CREATE TABLE runs (id text); INSERT INTO runs VALUES ('theirs')"))
    with scratch_database(precious) as url:
        name = make_url(url).database
        assert name.startswith(PREFIX) and name in _databases(admin)
        migrate.upgrade(create_engine(url))
    assert name not in _databases(admin)
    with keep.connect() as conn:
        assert conn.execute(text("SELECT id FROM runs")).scalar() == "theirs"
    keep.dispose()
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE precious WITH (FORCE)"))
    admin.dispose()


def test_a_server_that_refuses_a_new_database_is_refused_by_name(database_url):
    admin = _admin(database_url)
    with admin.connect() as conn:
        conn.execute(text("DROP ROLE IF EXISTS arc_no_createdb"))
        conn.execute(text("CREATE ROLE arc_no_createdb LOGIN NOCREATEDB"))
    url = make_url(database_url).set(username="arc_no_createdb").render_as_string(hide_password=False)
    with (
        pytest.raises(ScratchDatabaseRefused, match="cannot create a scratch database there"),
        scratch_database(url),
    ):
        pass
    with admin.connect() as conn:
        conn.execute(text("DROP ROLE arc_no_createdb"))
    admin.dispose()
