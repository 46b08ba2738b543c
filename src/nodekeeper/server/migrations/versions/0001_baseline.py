"""Baseline: the tables of the releases before Alembic (decision 074).

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

from nodekeeper.server.migrations.baseline import baseline_metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The frozen metadata emits exactly the DDL the previous releases' create_all did;
    # offline (--sql) scripts are not supported, nodekeeper always migrates online.
    baseline_metadata().create_all(op.get_bind(), checkfirst=False)


def downgrade() -> None:
    # Never run by nodekeeper: a database newer than the code is refused, not downgraded.
    raise NotImplementedError("nodekeeper does not downgrade databases")
