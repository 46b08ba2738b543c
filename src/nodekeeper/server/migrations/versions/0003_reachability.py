"""The reachability dial-back's per-node check times (decision 082).

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written out, not taken from store.metadata: a revision is frozen, the store moves on.
    op.create_table(
        "reachability",
        sa.Column("node_id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("checked_at", sa.Float, nullable=False),
        sa.Column("result", sa.Text, nullable=True),
    )
    op.create_index("ix_reachability_source_checked", "reachability", ["source", "checked_at"])


def downgrade() -> None:
    # Never run by nodekeeper: a database newer than the code is refused, not downgraded.
    raise NotImplementedError("nodekeeper does not downgrade databases")
