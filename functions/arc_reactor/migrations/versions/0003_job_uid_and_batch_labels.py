"""the Batch job's uid and the labels Batch sees

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Batch's TASK_STATE_CHANGED notifications name the job by JobUID (and TaskName/TaskUID), not by JobName:
the uid recorded at creation resolves such a message to its run in one index lookup. `labels` keeps what
the user wrote; `batch_labels` what Batch, its VMs, the task jobs and billing see after sanitization.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("batch_job_uid", sa.Text()))
    op.add_column("runs", sa.Column("batch_labels", JSONB()))
    op.create_index(
        "ix_runs_batch_job_uid",
        "runs",
        ["batch_job_uid"],
        postgresql_where=sa.text("batch_job_uid IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_runs_batch_job_uid", table_name="runs")
    op.drop_column("runs", "batch_labels")
    op.drop_column("runs", "batch_job_uid")
