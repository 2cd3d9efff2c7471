"""signing_keys: the deployment's own secrets, made once in the database; runs lose tower_token_hash

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

A run's Tower access token (core/tower.py) is now an HMAC of its id under the `tower` key kept here, so the
same token comes out of a redelivered submission, a recovery's or a Batch retry's, and nothing per run is
stored: runs.tower_token_hash (0009, a random token's hash, which a redelivered submission would have
replaced under a job that still held the first token) goes. The key is made here from the operating
system's random source and is read only by the functions, which reach the database already; it never
leaves the database but as a token's MAC.
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    keys = op.create_table(
        "signing_keys",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("secret", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.bulk_insert(keys, [{"name": "tower", "secret": secrets.token_bytes(32)}])
    op.drop_column("runs", "tower_token_hash")


def downgrade() -> None:
    op.add_column("runs", sa.Column("tower_token_hash", sa.Text))
    op.drop_table("signing_keys")
