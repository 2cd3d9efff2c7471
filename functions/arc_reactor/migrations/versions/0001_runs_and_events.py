"""runs and run_events

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column[datetime]:
    if nullable:
        return sa.Column(name, sa.DateTime(timezone=True))
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("pipeline", sa.Text, nullable=False),
        sa.Column("revision", sa.Text, nullable=False),
        sa.Column("engine", sa.Text, nullable=False),
        sa.Column("profile", sa.Text),
        sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'pending'")),
        sa.Column("parent_run_id", sa.Text, sa.ForeignKey("runs.id")),
        sa.Column("lineage_id", sa.Text, nullable=False),
        sa.Column("is_recovery", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("batch_job_name", sa.Text),
        sa.Column("work_dir", sa.Text, nullable=False),
        sa.Column("cache_dir", sa.Text, nullable=False),
        sa.Column("inputs_uri", sa.Text, nullable=False),
        sa.Column("results_uri", sa.Text, nullable=False),
        sa.Column("logs_uri", sa.Text, nullable=False),
        sa.Column("submitter", sa.Text),
        sa.Column("labels", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("params", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("source_bucket", sa.Text),
        sa.Column("source_object", sa.Text),
        sa.Column("source_generation", sa.BigInteger),
        sa.Column("idempotency_key", sa.Text),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        _ts("submitted_at"),
        _ts("started_at"),
        _ts("completed_at"),
        _ts("failed_at"),
        _ts("cancelled_at"),
        sa.Column("error_code", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("error_task", sa.Text),
        sa.Column("exit_code", sa.Integer),
        sa.Column("metrics", JSONB),
        sa.Column("session_id", sa.Text),
        sa.UniqueConstraint("source_bucket", "source_object", "source_generation", name="uq_runs_source"),
        sa.UniqueConstraint("idempotency_key", name="uq_runs_idempotency_key"),
        sa.CheckConstraint(
            "status IN ('pending','submitted','running','cancelling','completed','failed','cancelled')",
            name="ck_runs_status",
        ),
    )
    op.create_index("ix_runs_status_updated", "runs", ["status", "updated_at"])
    op.create_index("ix_runs_created", "runs", ["created_at", "id"])
    op.create_index("ix_runs_parent", "runs", ["parent_run_id"])
    op.create_table(
        "run_events",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        _ts("created_at", nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("from_status", sa.Text),
        sa.Column("to_status", sa.Text),
        sa.Column("detail", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.create_index("ix_run_events_run", "run_events", ["run_id", "id"])


def downgrade() -> None:
    op.drop_table("run_events")
    op.drop_table("runs")
