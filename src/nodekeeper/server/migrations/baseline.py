"""The schema of the releases before Alembic, frozen: revision 0001 creates it, and a
database those releases made (``create_all``, no ``alembic_version``) is adopted only
when it matches it (nodekeeper.server.migrate).

A copy, not an import of store.metadata: the store's tables will change with later
revisions, this must not. Its test checks it against store.metadata until then.
"""

from __future__ import annotations

import sqlalchemy as sa


def baseline_metadata() -> sa.MetaData:
    """Today's tables (nodekeeper 0.1.0) on a fresh MetaData."""
    metadata = sa.MetaData()
    sa.Table(
        "meta",
        metadata,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    sa.Table(
        "releases",
        metadata,
        sa.Column("process", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    sa.Table(
        "artifacts",
        metadata,
        sa.Column("process", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(128), primary_key=True),
        sa.Column("platform", sa.String(64), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("url", sa.Text, nullable=True),
        sa.Column("stored_name", sa.Text, nullable=True),
        sa.ForeignKeyConstraint(["process", "version"], ["releases.process", "releases.version"]),
    )
    sa.Table(
        "minimums",
        metadata,
        sa.Column("process", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(128), nullable=False),
    )
    sa.Table(
        "rollouts",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("process", sa.String(64), nullable=False, index=True),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("seed", sa.String(64), nullable=False),
        sa.Column("rate_per_day", sa.Float, nullable=True),
        sa.Column("base_percent", sa.Float, nullable=False),
        sa.Column("segment_start", sa.Float, nullable=True),
        sa.Column("started_at", sa.Float, nullable=False),
    )
    sa.Table(
        "audit",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("remote", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    sa.Table(
        "reports",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("report_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),  # hex
        sa.Column("process", sa.String(64), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("target_version", sa.String(128), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False, index=True),
        sa.Column("remote", sa.String(128), nullable=False),
        sa.UniqueConstraint("node_id", "report_id", name="uq_reports_node_report"),
        sa.Index("ix_reports_node_received", "node_id", "received_at"),
    )
    sa.Table(
        "node_versions",
        metadata,
        sa.Column("node_id", sa.String(64), primary_key=True),
        sa.Column("process", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False, index=True),
    )
    return metadata
