"""The Alembic migrations and the tables the code queries (adapters/tables.py) describe the same schema."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from arc_reactor.adapters import migrate
from arc_reactor.adapters.tables import metadata

pytestmark = pytest.mark.integration


def test_migrated_schema_matches_the_table_metadata(database_url):
    engine = create_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == [], f"migrations and adapters/tables.py disagree: {diff}"


def test_upgrade_is_idempotent_and_records_the_head(database_url):
    engine = create_engine(database_url)
    migrate.upgrade(engine)  # already at head: a no-op, not an error
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version
        assert {"runs", "run_events"} <= set(inspect(conn).get_table_names())
    engine.dispose()


def test_the_run_record_has_every_column_of_runs():
    from dataclasses import fields

    from arc_reactor.adapters.tables import runs
    from arc_reactor.core.run_record import RunRecord

    assert {f.name for f in fields(RunRecord)} == set(runs.c.keys())
