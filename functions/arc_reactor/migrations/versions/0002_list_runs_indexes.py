"""indexes for GET /runs filters

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Keyset pages are ordered by (created_at DESC, id DESC); ix_runs_created (0001) serves the unfiltered list
by a backward index scan. Each equality filter gets its own (column, created_at, id) index so a filtered page
is also one index range scan, and labels get a GIN index for `labels @> '{"k": "v"}'`.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_status_created", "runs", ["status", "created_at", "id"])
    op.create_index("ix_runs_pipeline_created", "runs", ["pipeline", "created_at", "id"])
    op.create_index("ix_runs_submitter_created", "runs", ["submitter", "created_at", "id"])
    op.create_index(
        "ix_runs_labels",
        "runs",
        ["labels"],
        postgresql_using="gin",
        postgresql_ops={"labels": "jsonb_path_ops"},
    )


def downgrade() -> None:
    for name in (
        "ix_runs_labels",
        "ix_runs_submitter_created",
        "ix_runs_pipeline_created",
        "ix_runs_status_created",
    ):
        op.drop_index(name, table_name="runs")
