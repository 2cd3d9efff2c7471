"""run_tasks: one row per attempt of each task of a run (the ledger behind progress, diagnosis and cost)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

A task attempt is (run_id, task_id, attempt): the engine's own task id (Nextflow's taskId, Snakemake's job
id) and its attempt number, so a retried task is a new row and the first attempt keeps its story. Updates
arrive at least once and in any order (Tower batches, redelivered requests, the trace file at the end):
adapters/tasks_repo.py writes them with one INSERT .. ON CONFLICT whose status never moves backwards
(arc_task_rank: pending < submitted < running < a terminal status; the first terminal status wins) and whose
other fields are filled from the most advanced update that has them.

runs.tower_token_hash is the SHA-256 of the run's own Tower access token (Nextflow reports to runs_api with
it); the token itself is only in the orchestrator job's environment.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_RANK = """
CREATE OR REPLACE FUNCTION arc_task_rank(status text) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE status
        WHEN 'pending' THEN 0 WHEN 'submitted' THEN 1 WHEN 'running' THEN 2
        WHEN 'succeeded' THEN 3 WHEN 'cached' THEN 3 WHEN 'failed' THEN 3 WHEN 'aborted' THEN 3
        ELSE -1 END
$$
"""


def upgrade() -> None:
    op.execute(_RANK)
    op.create_table(
        "run_tasks",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("process", sa.Text),
        sa.Column("name", sa.Text),
        sa.Column("tag", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("exit_code", sa.Integer),
        sa.Column("submitted_at", sa.DateTime(timezone=True)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("cpus", sa.Integer),
        sa.Column("memory_bytes", sa.BigInteger),
        sa.Column("machine_type", sa.Text),
        sa.Column("zone", sa.Text),
        sa.Column("spot", sa.Boolean),
        sa.Column("preempted", sa.Boolean),
        sa.Column("native_id", sa.Text),
        sa.Column("work_dir", sa.Text),
        sa.Column("error_tail", sa.Text),
        sa.Column("extra", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("run_id", "task_id", "attempt", name="uq_run_tasks_attempt"),
    )
    op.create_index("ix_run_tasks_run", "run_tasks", ["run_id", "id"])
    op.create_index("ix_run_tasks_run_status", "run_tasks", ["run_id", "status", "id"])
    op.create_index("ix_run_tasks_run_process", "run_tasks", ["run_id", "process", "id"])
    op.add_column("runs", sa.Column("tower_token_hash", sa.Text))
    op.add_column("runs", sa.Column("progress", JSONB))


def downgrade() -> None:
    op.drop_column("runs", "progress")
    op.drop_column("runs", "tower_token_hash")
    op.drop_index("ix_run_tasks_run_process", table_name="run_tasks")
    op.drop_index("ix_run_tasks_run_status", table_name="run_tasks")
    op.drop_index("ix_run_tasks_run", table_name="run_tasks")
    op.drop_table("run_tasks")
    op.execute("DROP FUNCTION IF EXISTS arc_task_rank(text)")
