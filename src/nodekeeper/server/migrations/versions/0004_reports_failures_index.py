"""A partial index over the failure reports (decision 081).

`rollout status` (GET /v1/admin/status) counts a week of failure reports per version and
kind. Without this index it reads every report of the week, heartbeats included: ~1M
rows for 100,000 nodes, over the 200 ms target. The index holds only the failures (a few
per cent of the rows), ordered by received_at, with the columns the query groups by, so
the query reads those alone, from the index.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen here (a revision must not change when the code does); the same text as
# store.FAILURE_KINDS_SQL, which a test checks.
FAILURE_KINDS_SQL = "kind NOT IN ('heartbeat', 'update_succeeded')"


def upgrade() -> None:
    # Plain CREATE INDEX inside the upgrade's transaction (decision 074): it blocks report
    # inserts while it builds, ~1 s per million reports here; CONCURRENTLY cannot run in a
    # transaction, and the advisory lock that serializes replicas' migrations needs one.
    op.create_index(
        "ix_reports_failures",
        "reports",
        # received_at first (the query's range), then what it groups by: an index-only
        # scan, no visit to the table's pages for the ~3 % of rows that are failures.
        ["received_at", "process", "kind", "version", "target_version"],
        postgresql_where=sa.text(FAILURE_KINDS_SQL),
        sqlite_where=sa.text(FAILURE_KINDS_SQL),
    )


def downgrade() -> None:
    # Never run by nodekeeper: a database newer than the code is refused, not downgraded.
    raise NotImplementedError("nodekeeper does not downgrade databases")
