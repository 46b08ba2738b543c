"""The control plane's TUF metadata: every signed version of every role (decision 084).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written out, not taken from store.metadata: a revision is frozen, the store moves on.
    op.create_table(
        "tuf_metadata",
        sa.Column("role", sa.String(16), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("expires", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    # Never run by nodekeeper: a database newer than the code is refused, not downgraded.
    raise NotImplementedError("nodekeeper does not downgrade databases")
