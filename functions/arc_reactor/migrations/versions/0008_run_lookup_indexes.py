"""indexes for finding a run by a prefix of its id or by its name (the CLI's `arc runs show r0mx3`)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

GET /runs?id_prefix= is `id LIKE 'prefix%'`. The primary key's btree uses the database's collation, which
cannot serve LIKE unless it is C; an index with text_pattern_ops can, whatever the collation. GET
/runs?name= reads a name's runs newest first from (name, created_at, id). Both keep the lookups flat as the
ledger grows; they are additions only, so the previous release runs unchanged on this schema.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_id_pattern", "runs", ["id"], postgresql_ops={"id": "text_pattern_ops"})
    op.create_index("ix_runs_name", "runs", ["name", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_name", table_name="runs")
    op.drop_index("ix_runs_id_pattern", table_name="runs")
