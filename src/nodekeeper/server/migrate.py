"""The control plane's schema migrations (Alembic), run at server start and by
`nodekeeper server db upgrade|current` (decision 074).

One upgrade runs inside one transaction that first takes a lock, so replicas starting
together over one database migrate it once: the others wait, then find it current.
PostgreSQL: a transaction-scoped advisory lock (and its DDL is transactional, so a failed
revision leaves nothing behind). SQLite: ``BEGIN IMMEDIATE``, the file's write lock.

What to do with a database is decided by ``decide`` from what is found in it, apart from
the I/O: empty → create through the revisions; tables but no ``alembic_version`` (made by
the releases before Alembic with ``create_all``) → adopt as the baseline when it matches
it, then upgrade; a revision this code does not know → refuse, never downgrade.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from nodekeeper import __version__

from .migrations.baseline import baseline_metadata
from .store import create_db_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BASELINE = "0001"
VERSION_TABLE = "alembic_version"
# pg_advisory_xact_lock's key: any constant all replicas share ("nkmigr" in ASCII).
ADVISORY_LOCK_KEY = 0x6E6B6D696772
# How long a replica waits for another one's migration before giving up with a message.
LOCK_TIMEOUT_SECONDS = 120


class MigrationError(Exception):
    """A database this code must not touch (too new, or not a nodekeeper schema), or a
    migration lock that was not granted in time; the message says what to do."""


class Action(enum.Enum):
    NOTHING = "nothing"  # at the head already
    CREATE = "create"  # empty: run every revision
    ADOPT = "adopt"  # the previous release's tables: stamp the baseline, then upgrade
    UPGRADE = "upgrade"  # at a known revision behind the head
    REFUSE_NEWER = "refuse-newer"  # at a revision this code does not know


@dataclass(frozen=True)
class Found:
    """What a database holds, as far as migrating it goes."""

    tables: frozenset[str]  # our tables, without alembic_version
    revisions: tuple[str, ...]  # rows of alembic_version (none when it is absent)


def decide(found: Found, known: frozenset[str], heads: frozenset[str]) -> Action:
    """What to do with a database; pure, the table of cases is in its test."""
    if found.revisions:
        if not set(found.revisions) <= known:
            return Action.REFUSE_NEWER
        return Action.NOTHING if set(found.revisions) == heads else Action.UPGRADE
    return Action.ADOPT if found.tables else Action.CREATE


@dataclass(frozen=True)
class Status:
    """`server db current`: where a database is against this code."""

    action: Action
    revisions: tuple[str, ...]
    heads: tuple[str, ...]

    def describe(self) -> str:
        at = ", ".join(self.revisions) or "none"
        head = ", ".join(self.heads)
        return {
            Action.NOTHING: f"schema revision {at} (current: this nodekeeper's head is {head})",
            Action.CREATE: f"no schema yet; `server db upgrade` or the server's start "
            f"creates revision {head}",
            Action.ADOPT: "the tables of a nodekeeper release before schema revisions, not "
            f"stamped; `server db upgrade` or the server's start adopts them as {BASELINE} "
            f"and upgrades to {head}",
            Action.UPGRADE: f"schema revision {at}, behind this nodekeeper's {head}; "
            "`server db upgrade` or the server's start upgrades it",
            Action.REFUSE_NEWER: _newer_message(self.revisions, self.heads),
        }[self.action]


def status(url: str) -> Status:
    """Where the database at ``url`` is; reads only."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            script = _script()
            found = _find(conn)
            heads = frozenset(script.get_heads())
            action = decide(found, _known(script), heads)
            return Status(action, found.revisions, tuple(sorted(heads)))
    finally:
        engine.dispose()


def upgrade(url: str) -> Status:
    """Bring the database at ``url`` to the head under the migration lock; returns what
    was found before (``action`` says what was done). Raises MigrationError."""
    engine = _migration_engine(url)
    try:
        with _locked_transaction(engine) as conn:
            script = _script()
            found = _find(conn)
            heads = frozenset(script.get_heads())
            action = decide(found, _known(script), heads)
            if action is Action.REFUSE_NEWER:
                raise MigrationError(_newer_message(found.revisions, tuple(sorted(heads))))
            config = _config(conn)
            if action is Action.ADOPT:
                differences = baseline_differences(conn)
                if differences:
                    raise MigrationError(
                        "the database holds tables but no schema revision, and they are not "
                        "the tables of an earlier nodekeeper release "
                        f"({'; '.join(differences[:5])}); point --db at nodekeeper's "
                        "database or at an empty one"
                    )
                command.stamp(config, BASELINE)
            if action is not Action.NOTHING:
                command.upgrade(config, "heads")
            return Status(action, found.revisions, tuple(sorted(heads)))
    finally:
        engine.dispose()


def baseline_differences(conn: Connection) -> list[str]:
    """How the tables in the database differ from the baseline's, in words (none: the
    same). Alembic's autogenerate comparison: tables, columns, types, nullability,
    indexes, unique and foreign keys."""
    context = MigrationContext.configure(
        conn,
        opts={"include_name": lambda name, kind, _parent: kind != "table" or name != VERSION_TABLE},
    )
    return [_describe_diff(diff) for diff in compare_metadata(context, baseline_metadata())]


def _describe_diff(diff: Any) -> str:
    # compare_metadata gives ("add_table", Table) tuples, or lists of them for columns.
    first = diff[0] if isinstance(diff, list) else diff
    kind, *rest = first
    names = [getattr(item, "name", None) for item in rest if hasattr(item, "name")]
    shown = {
        "add_table": "missing table",
        "remove_table": "unexpected table",
        "add_column": "missing column",
        "remove_column": "unexpected column",
        "add_index": "missing index",
        "remove_index": "unexpected index",
        "modify_type": "different column type",
        "modify_nullable": "different nullability",
    }.get(kind, kind.replace("_", " "))
    where = [str(item) for item in rest if isinstance(item, str) and item]
    return f"{shown} {'.'.join(where + [n for n in names if n])}".strip()


def _newer_message(revisions: tuple[str, ...], heads: tuple[str, ...]) -> str:
    return (
        f"the database is at schema revision {', '.join(revisions)}, which this nodekeeper "
        f"({__version__}, schema {', '.join(heads)}) does not know: a newer nodekeeper "
        "upgraded it. Run that newer version, or restore the backup taken before the "
        "upgrade; nodekeeper never downgrades a database"
    )


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config(None))


def _known(script: ScriptDirectory) -> frozenset[str]:
    return frozenset(rev.revision for rev in script.walk_revisions())


def _config(conn: Connection | None) -> Config:
    """Alembic's configuration built in code: no alembic.ini for an operator to find."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


def _find(conn: Connection) -> Found:
    tables = set(sa.inspect(conn).get_table_names())
    revisions: tuple[str, ...] = ()
    if VERSION_TABLE in tables:
        revisions = tuple(MigrationContext.configure(conn).get_current_heads())
    return Found(frozenset(tables - {VERSION_TABLE}), revisions)


def _migration_engine(url: str) -> Engine:
    engine = create_db_engine(url)
    if engine.dialect.name == "sqlite":
        # pysqlite opens a transaction only before DML, so DDL would commit statement by
        # statement and take no lock: take over and begin with BEGIN IMMEDIATE, which
        # takes the write lock at once (a second migrator waits on the busy timeout).
        @sa.event.listens_for(engine, "connect")
        def _autocommit_driver(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextlib.contextmanager
def _locked_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # lock_timeout bounds the wait for another replica's migration; SET LOCAL
            # ends with this transaction.
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'")
            try:
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
                )
            except sa.exc.OperationalError:
                raise MigrationError(
                    f"another control plane has been migrating the database for over "
                    f"{LOCK_TIMEOUT_SECONDS} s; check it, then start this one again"
                ) from None
        yield conn
