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


def test_run_labels_are_filled_for_existing_runs_and_the_migration_goes_back(database_url):
    from alembic import command
    from alembic.config import Config

    from arc_reactor.local.scratch_db import scratch_database

    with scratch_database(database_url) as url:
        engine = create_engine(url)
        migrate.upgrade(engine, "0006")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO runs (id, pipeline, revision, engine, lineage_id, work_dir, cache_dir, "
                    "inputs_uri, results_uri, logs_uri, labels) VALUES "
                    "('r0before0000000001', 'p', '1', 'snakemake', 'r0before0000000001', 'w', 'c', 'i', 'r', "
                    """'l', '{"project": "atlas", "team": "t1"}')"""
                )
            )
        migrate.upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT key, value, run_id FROM run_labels ORDER BY key")).all()
            assert rows == [("project", "atlas", "r0before0000000001"), ("team", "t1", "r0before0000000001")]
            assert "ix_runs_labels" not in {i["name"] for i in inspect(conn).get_indexes("runs")}
        cfg = Config()
        cfg.set_main_option("script_location", str(migrate._MIGRATIONS))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0006")
        with engine.connect() as conn:
            assert "run_labels" not in inspect(conn).get_table_names()
            assert "ix_runs_labels" in {i["name"] for i in inspect(conn).get_indexes("runs")}
        migrate.upgrade(engine)  # and forward again
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM run_labels")).scalar() == 2
        engine.dispose()
