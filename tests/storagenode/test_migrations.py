"""Schema migrations on real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storagenode import migrations as m
from storagenode.store import open_database


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_fresh_database_gets_every_migration_recorded(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "db")
    assert m.migrate(conn) == m.code_version(m.MIGRATIONS) == len(m.MIGRATIONS)
    recorded = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert recorded == list(range(1, len(m.MIGRATIONS) + 1))
    assert m.migrate(conn) == len(m.MIGRATIONS)  # idempotent


def test_forward_from_an_older_database_keeps_data(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "db")
    assert m.migrate(conn, m.MIGRATIONS[:1]) == 1
    conn.execute("INSERT INTO pieces VALUES ('p', 3, 'abc', '2020-01-01T00:00:00Z')")
    assert m.migrate(conn) == len(m.MIGRATIONS)
    assert conn.execute("SELECT id, size FROM pieces").fetchall() == [("p", 3)]
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "pieces_created_at" in indexes


def test_newer_database_is_refused(tmp_path: Path) -> None:
    newer = [
        *m.MIGRATIONS,
        m.Migration(len(m.MIGRATIONS) + 1, "later", m.sql("CREATE TABLE t (x)")),
    ]
    conn = open_database(tmp_path / "db")
    m.migrate(conn, newer)
    with pytest.raises(m.DowngradeError, match="downgrade not supported"):
        m.migrate(conn)


def test_failing_migration_rolls_back_to_the_last_complete_one(tmp_path: Path) -> None:
    def half_way(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        raise RuntimeError("boom")

    n = len(m.MIGRATIONS)
    plan = [
        *m.MIGRATIONS,
        m.Migration(n + 1, "good", m.sql("CREATE TABLE good (x)")),
        m.Migration(n + 2, "bad", half_way),
    ]
    conn = open_database(tmp_path / "db")
    with pytest.raises(m.MigrationError, match=f"stays at schema version {n + 1}"):
        m.migrate(conn, plan)
    assert m.db_version(conn) == n + 1
    assert "good" in _tables(conn) and "half" not in _tables(conn)


def test_sequence_must_have_no_gaps() -> None:
    step = m.sql("SELECT 1")
    m.check_sequence([m.Migration(1, "a", step), m.Migration(2, "b", step)])
    with pytest.raises(ValueError, match="without gaps"):
        m.check_sequence([m.Migration(1, "a", step), m.Migration(3, "b", step)])
    with pytest.raises(ValueError):
        m.check_sequence([m.Migration(2, "a", step)])


def test_pending_is_pure() -> None:
    assert [x.version for x in m.pending(0, m.MIGRATIONS)] == [x.version for x in m.MIGRATIONS]
    assert m.pending(len(m.MIGRATIONS), m.MIGRATIONS) == []
    with pytest.raises(m.DowngradeError):
        m.pending(len(m.MIGRATIONS) + 1, m.MIGRATIONS)
