"""what an idempotency key was used for

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

An Idempotency-Key is scoped to its caller, and the run it made remembers a fingerprint of the request
(its bundle files, or a recovery's overrides): a retry with the same key and body answers with that run,
the same key with a different body is refused instead of silently answering with the first run.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("idempotency_fingerprint", sa.Text()))


def downgrade() -> None:
    op.drop_column("runs", "idempotency_fingerprint")
