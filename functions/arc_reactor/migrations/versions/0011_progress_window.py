"""runs.progress_seq: the order in which runs' progress changed, so the SSE hub reads only what changed

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

Every write of a run's progress (runs_repo.set_progress) takes the next value of run_progress_seq. The SSE
hub reads, once per interval, the watched runs whose progress_seq is past the window's start (api/sse.py),
as it reads run_events: a range of the partial index, whose cost is what changed lately, not one probe per
watched run. An addition only: the previous release runs unchanged on this schema.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE run_progress_seq")
    op.add_column("runs", sa.Column("progress_seq", sa.BigInteger))
    op.create_index(
        "ix_runs_progress_seq",
        "runs",
        ["progress_seq"],
        postgresql_include=["id"],  # the window's run ids from the index alone
        postgresql_where=sa.text("progress_seq IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_runs_progress_seq", table_name="runs")
    op.drop_column("runs", "progress_seq")
    op.execute("DROP SEQUENCE run_progress_seq")
