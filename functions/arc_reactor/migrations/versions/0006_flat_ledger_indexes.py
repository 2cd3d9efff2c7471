"""indexes that keep recover's lineage check and the sweeper flat as the ledger grows

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

At 10^6 runs recover's check for live runs of a lineage was a sequential scan, and the sweeper's query
a bitmap scan over every active run plus a sort (bench/ledger.py). A lineage is a handful of runs, so an
index on lineage_id makes the check a few index probes; the sweeper reads the oldest active runs in
updated_at order from a partial index that holds only the active ones (its predicate is the query's).
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ACTIVE = "status IN ('pending', 'submitted', 'running', 'cancelling')"


def upgrade() -> None:
    op.create_index("ix_runs_lineage", "runs", ["lineage_id"])
    op.create_index("ix_runs_active_updated", "runs", ["updated_at"], postgresql_where=ACTIVE)


def downgrade() -> None:
    op.drop_index("ix_runs_active_updated", table_name="runs")
    op.drop_index("ix_runs_lineage", table_name="runs")
