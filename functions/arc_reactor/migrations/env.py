"""Alembic environment: runs on a connection handed in by arc_reactor.adapters.migrate."""

from alembic import context

from arc_reactor.adapters.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through adapters.migrate
    raise RuntimeError("run migrations through `arc db upgrade` (arc_reactor.adapters.migrate)")
context.configure(connection=connection, target_metadata=metadata, transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
