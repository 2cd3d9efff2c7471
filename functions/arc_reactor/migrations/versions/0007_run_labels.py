"""run_labels: one row per label of a run, so a ?label= listing is an index range scan in page order

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

GET /runs?label=k=v matched `labels @> {"k": "v"}` through the GIN index ix_runs_labels, which cannot give
rows in (created_at, id) order: PostgreSQL collected every match and sorted them (26 ms for a 1% label at
10^6 runs, bench/ledger.py), or walked ix_runs_created and filtered (slow for a rare label). A row per label
with a btree on (key, value, created_at, run_id) hands out a label's runs newest first at any depth.

The rows are kept by the database itself: a trigger on runs writes them on insert and rewrites them if a
run's labels or created_at ever change, so no writer (the service, a backfill, a benchmark's fill) can
leave them out of step. Existing runs are filled here. Values are the labels' text (jsonb_each_text); label
values are always strings (the bundle check), so a row matches exactly when `labels @>` would, and the
listing's answers are what they were.

The GIN index goes: the listing was its only user, and PostgreSQL's estimate for `@>` (a fixed fraction of
the rows) made it prefer the GIN path with a hash join and a sort over reading run_labels in order (37 ms
instead of 0.4 ms for a 1% label at 10^6 runs).
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_FUNCTION = """
CREATE OR REPLACE FUNCTION arc_runs_sync_labels() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM run_labels WHERE run_id = OLD.id;
    END IF;
    INSERT INTO run_labels (key, value, created_at, run_id)
    SELECT l.key, l.value, NEW.created_at, NEW.id FROM jsonb_each_text(NEW.labels) AS l;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "run_labels",
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.PrimaryKeyConstraint("key", "value", "created_at", "run_id"),
    )
    op.create_index("ix_run_labels_run", "run_labels", ["run_id"])
    op.execute(_FUNCTION)
    op.execute(
        "CREATE TRIGGER runs_labels_insert AFTER INSERT ON runs "
        "FOR EACH ROW EXECUTE FUNCTION arc_runs_sync_labels()"
    )
    op.execute(
        "CREATE TRIGGER runs_labels_update AFTER UPDATE OF labels, created_at ON runs "
        "FOR EACH ROW WHEN (OLD.labels IS DISTINCT FROM NEW.labels OR OLD.created_at <> NEW.created_at) "
        "EXECUTE FUNCTION arc_runs_sync_labels()"
    )
    op.execute(
        "INSERT INTO run_labels (key, value, created_at, run_id) "
        "SELECT l.key, l.value, r.created_at, r.id FROM runs AS r, jsonb_each_text(r.labels) AS l"
    )
    op.drop_index("ix_runs_labels", table_name="runs")


def downgrade() -> None:
    op.create_index(
        "ix_runs_labels",
        "runs",
        ["labels"],
        postgresql_using="gin",
        postgresql_ops={"labels": "jsonb_path_ops"},
    )
    op.execute("DROP TRIGGER IF EXISTS runs_labels_update ON runs")
    op.execute("DROP TRIGGER IF EXISTS runs_labels_insert ON runs")
    op.execute("DROP FUNCTION IF EXISTS arc_runs_sync_labels()")
    op.drop_table("run_labels")
