"""Rollouts that stop themselves and staged plans (decisions 078, 079): why a rollout is
paused, an abort, a staged plan and the latest health judgement, as nullable columns of
``rollouts`` (a row written before this revision means none of them).

Revision ID: 0002
Revises: 0003 (0003 reached main first; this follows it)
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = (
    ("paused_by", sa.String(16)),
    ("paused_at", sa.Float),
    ("pause_why", sa.Text),
    ("pause_detail", sa.Text),
    ("aborted_at", sa.Float),
    ("plan_stages", sa.Text),
    ("soak_seconds", sa.Float),
    ("stage", sa.Integer),
    ("stage_since", sa.Float),
    ("forgive_before", sa.Float),
    ("health", sa.Text),
    ("health_at", sa.Float),
)


def upgrade() -> None:
    # ADD COLUMN of a nullable column without a default: no table rewrite on either
    # back end, and SQLite needs no batch (copy-and-move) mode for it.
    for name, type_ in COLUMNS:
        op.add_column("rollouts", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    # Never run by nodekeeper: a database newer than the code is refused, not downgraded.
    raise NotImplementedError("nodekeeper does not downgrade databases")
