"""Ordered schema migrations, recorded in the database they change.

Each migration runs in its own transaction together with the row that records it, so a
crash or a failing step leaves the database at the last migration that completed, never
half-way through one. A database recorded at a version newer than this code knows is
refused: the old code cannot know what the new schema means (downgrade not supported).
The pulse reports the schema version so the keeper can tell whether a rollback is safe.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Step = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Step


class DowngradeError(Exception):
    """The database was migrated by a newer version of the node."""


class MigrationError(Exception):
    """A migration failed; its transaction was rolled back."""


def sql(*statements: str) -> Step:
    """A step that runs SQL statements in order (inside the migration's transaction)."""

    def run(conn: sqlite3.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return run


# Extended by later releases; never edit or renumber an entry once released.
MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "create pieces",
        sql(
            "CREATE TABLE pieces ("
            " id TEXT PRIMARY KEY,"
            " size INTEGER NOT NULL,"
            " sha256 TEXT NOT NULL,"
            " created_at TEXT NOT NULL)"
        ),
    ),
    Migration(
        2,
        "index pieces by age",
        # Garbage collection and audits walk pieces oldest first.
        sql("CREATE INDEX pieces_created_at ON pieces (created_at)"),
    ),
]

_RECORD_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " applied_at TEXT NOT NULL)"
)


def code_version(migrations: Sequence[Migration]) -> int:
    return migrations[-1].version if migrations else 0


def check_sequence(migrations: Sequence[Migration]) -> None:
    """Versions must be 1, 2, 3, ...: a gap or a repeat is a release mistake."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(
                f"migration {migration.name!r} has version {migration.version}, "
                f"expected {expected}: migrations are numbered 1, 2, 3, ... without gaps"
            )


def pending(db_version: int, migrations: Sequence[Migration]) -> list[Migration]:
    """The migrations to run on a database at ``db_version``; refuses a newer database."""
    known = code_version(migrations)
    if db_version > known:
        raise DowngradeError(
            f"downgrade not supported: the database is at schema version {db_version}, "
            f"this node knows up to {known}; run a node version that knows schema "
            f"{db_version} or newer"
        )
    return [m for m in migrations if m.version > db_version]


def db_version(conn: sqlite3.Connection) -> int:
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if not has_table:
        return 0
    (version,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(version)


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] | None = None) -> int:
    """Bring the database up to date; returns the schema version it ends at.

    ``conn`` must be in autocommit mode (``isolation_level=None``) so that the
    transactions here are the only ones.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    check_sequence(migrations)
    conn.execute(_RECORD_TABLE)
    version = db_version(conn)
    for migration in pending(version, migrations):
        conn.execute("BEGIN IMMEDIATE")
        try:
            migration.apply(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (
                    migration.version,
                    migration.name,
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                ),
            )
            conn.execute("COMMIT")
        except Exception as exc:
            conn.execute("ROLLBACK")
            raise MigrationError(
                f"migration {migration.version} ({migration.name}) failed and was rolled back: "
                f"{exc}; the database stays at schema version {version}"
            ) from exc
        version = migration.version
    return version
