"""log files that could not be uploaded

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

A run whose logs (or results) could not all be uploaded says so on its row, beside a note event naming
the files, instead of looking complete with nothing in logs/.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("upload_failures", sa.Integer()))


def downgrade() -> None:
    op.drop_column("runs", "upload_failures")
