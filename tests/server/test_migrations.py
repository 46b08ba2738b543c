"""Schema migrations (decision 074) on an SQLite file and on the real PostgreSQL: the
baseline revision makes the tables create_all made, a database of the previous release is
adopted with its rows, a newer one is refused untouched, and replicas migrating at once
migrate once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from nodekeeper.server import migrate
from nodekeeper.server.migrate import Action, Found, MigrationError, decide
from nodekeeper.server.migrations.baseline import baseline_metadata
from nodekeeper.server.models import ArtifactRecord
from nodekeeper.server.store import (
    FAILURE_KINDS_SQL,
    GENERATION,
    Store,
    create_db_engine,
    metadata,
)
from tests.support import run_main

HEADS = frozenset({"0001"})
KNOWN = frozenset({"0001"})
# The head of this code's revisions (the decision table above uses its own names).
HEAD = migrate._script().get_current_head()
ART = ArtifactRecord("linux_amd64", "ab" * 32, 1234, url="https://cdn.example/sn.zip")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cp.db'}"
    return request.getfixturevalue("pg_url")


# -- the decision, apart from any database -------------------------------------------------


@pytest.mark.parametrize(
    ("tables", "revisions", "expected"),
    [
        ((), (), Action.CREATE),  # empty database
        (("releases", "meta"), (), Action.ADOPT),  # the previous release's create_all
        (("releases", "meta"), ("0001",), Action.NOTHING),
        (("releases", "meta"), ("0000",), Action.UPGRADE),  # known, behind the head
        (("releases", "meta"), ("0002",), Action.REFUSE_NEWER),  # a newer nodekeeper's
        (("releases", "meta"), ("0001", "0002"), Action.REFUSE_NEWER),
        ((), ("0002",), Action.REFUSE_NEWER),  # a version row without tables: still newer
    ],
)
def test_decide(tables, revisions, expected):
    known = KNOWN | {"0000"}
    assert decide(Found(frozenset(tables), revisions), known, HEADS) is expected


# -- the baseline is today's schema --------------------------------------------------------


def _reflect(url: str) -> dict:
    """Everything reflection sees of our tables, comparable across two databases."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            schema = {}
            for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
                schema[table] = {
                    "columns": [
                        (c["name"], str(c["type"]), c["nullable"], c.get("autoincrement"))
                        for c in inspector.get_columns(table)
                    ],
                    "pk": inspector.get_pk_constraint(table)["constrained_columns"],
                    "fks": sorted(
                        (
                            tuple(f["constrained_columns"]),
                            f["referred_table"],
                            tuple(f["referred_columns"]),
                        )
                        for f in inspector.get_foreign_keys(table)
                    ),
                    "indexes": sorted(
                        (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                        for i in inspector.get_indexes(table)
                    ),
                    "uniques": sorted(
                        (u["name"], tuple(u["column_names"]))
                        for u in inspector.get_unique_constraints(table)
                    ),
                }
            return schema
    finally:
        engine.dispose()


def _drop_everything(url: str) -> None:
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            metadata.drop_all(conn)
            conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()


def test_baseline_revision_creates_what_create_all_created(db_url):
    engine = create_db_engine(db_url)
    metadata.create_all(engine)
    engine.dispose()
    by_create_all = _reflect(db_url)
    _drop_everything(db_url)
    assert _reflect(db_url) == {}

    assert migrate.upgrade(db_url).action is Action.CREATE

    by_migrations = _reflect(db_url)
    assert set(by_migrations) == {t.name for t in metadata.sorted_tables}
    assert by_migrations == by_create_all


def test_the_failures_index_predicate_is_frozen_in_its_revision():
    """Revision 0004 keeps its own copy of the predicate; the store's queries must use
    the same text, or PostgreSQL stops using the index (decision 081)."""
    import importlib

    revision = importlib.import_module(
        "nodekeeper.server.migrations.versions.0004_reports_failures_index"
    )
    assert FAILURE_KINDS_SQL.text == revision.FAILURE_KINDS_SQL


# -- a database of the previous release ----------------------------------------------------


def _previous_release_database(url: str) -> None:
    """What nodekeeper 0.1.0's `Store.init_schema` made (create_all of the baseline
    tables and the generation row, no alembic_version), with a row in every table, as
    that release's store wrote them (today's store writes today's columns)."""
    engine = create_db_engine(url)
    old = baseline_metadata()
    old.create_all(engine)
    t = old.tables
    with engine.begin() as conn:
        conn.execute(t["meta"].insert().values(key=GENERATION, value=5))
        conn.execute(
            sa.text(
                "INSERT INTO reports (report_id, node_id, process, version, target_version, "
                "kind, message, details, at, received_at, remote) VALUES ('r1', 'aa', "
                "'storagenode', '1.0.0', '1.1.0', 'update_failed', 'no space', '{}', 1.0, 2.0, "
                "'10.0.0.1')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO node_versions (node_id, process, version, last_seen) "
                "VALUES ('aa', 'storagenode', '1.0.0', 2.0)"
            )
        )
        for at, version in ((10.0, "1.0.0"), (11.0, "1.1.0")):
            conn.execute(
                t["releases"].insert().values(process="storagenode", version=version, created_at=at)
            )
            conn.execute(
                t["artifacts"]
                .insert()
                .values(
                    process="storagenode",
                    version=version,
                    platform=ART.platform,
                    sha256=ART.sha256,
                    size=ART.size,
                    url=ART.url,
                )
            )
        conn.execute(t["minimums"].insert().values(process="storagenode", version="1.0.0"))
        conn.execute(
            t["rollouts"]
            .insert()
            .values(
                process="storagenode",
                version="1.1.0",
                seed="cd" * 32,
                rate_per_day=10.0,
                base_percent=0.0,
                segment_start=13.0,
                started_at=13.0,
            )
        )
        conn.execute(
            t["audit"].insert().values(at=13.0, remote="t", action="rollout.start", detail="{}")
        )
    engine.dispose()


def _rows(url: str) -> dict[str, list]:
    """Every row of the baseline's columns (what the previous release wrote)."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table.name: sorted(
                    tuple(row)
                    for row in conn.execute(
                        sa.select(*(sa.column(c.name) for c in table.columns)).select_from(
                            sa.table(table.name)
                        )
                    ).all()
                )
                for table in baseline_metadata().sorted_tables
            }
    finally:
        engine.dispose()


def _version_rows(url: str) -> list[str] | None:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            if "alembic_version" not in sa.inspect(conn).get_table_names():
                return None
            return [r[0] for r in conn.execute(sa.text("SELECT version_num FROM alembic_version"))]
    finally:
        engine.dispose()


def test_previous_release_database_is_adopted_at_start_with_its_rows(db_url):
    _previous_release_database(db_url)
    before = _rows(db_url)
    assert all(before.values()), before  # a row in every table
    assert migrate.status(db_url).action is Action.ADOPT
    assert _version_rows(db_url) is None

    store = Store(db_url)
    store.init_schema()  # what the server's start does (app.create_app)
    snapshot = store.snapshot(now=14.0)
    store.close()

    assert _rows(db_url) == before
    assert _version_rows(db_url) == [HEAD]
    assert migrate.status(db_url).action is Action.NOTHING
    # ...and the later revisions' tables are there, as create_all would make them today.
    assert set(_reflect(db_url)) == {t.name for t in metadata.sorted_tables}
    record = snapshot.processes["storagenode"]
    assert sorted(record.releases) == ["1.0.0", "1.1.0"]
    rollout = record.rollout
    assert rollout is not None and rollout.version == "1.1.0"
    # Revision 0002's columns read as "none of it" on a row written before them.
    assert (rollout.pause, rollout.aborted_at, rollout.plan, rollout.health) == (None,) * 4


def test_db_commands_on_a_previous_release_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'data' / 'control-plane.db'}"
    (tmp_path / "data").mkdir()
    _previous_release_database(url)
    before = _rows(url)
    data_dir = ["--data-dir", str(tmp_path / "data")]

    current = run_main(["server", "db", "current", *data_dir])
    assert current.returncode == 0, current.stderr
    assert "not stamped" in current.stdout
    assert _version_rows(url) is None  # `current` changes nothing

    upgraded = run_main(["server", "db", "upgrade", *data_dir])
    assert upgraded.returncode == 0, upgraded.stderr
    assert "adopted the previous release's tables" in upgraded.stdout
    assert _rows(url) == before

    again = run_main(["server", "db", "upgrade", *data_dir])
    assert f"already at schema revision {HEAD}" in again.stdout
    current = run_main(["server", "db", "current", *data_dir])
    assert f"schema revision {HEAD} (current" in current.stdout


def test_tables_that_are_not_a_previous_release_are_refused_untouched(db_url):
    engine = create_db_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE releases (name VARCHAR(10) PRIMARY KEY)"))
    engine.dispose()

    with pytest.raises(MigrationError) as refused:
        migrate.upgrade(db_url)

    assert "not the tables of an earlier nodekeeper release" in str(refused.value)
    assert "missing table" in str(refused.value)
    assert _version_rows(db_url) is None
    assert list(_reflect(db_url)) == ["releases"]


# -- a database newer than the code --------------------------------------------------------


def _make_newer(url: str) -> None:
    migrate.upgrade(url)
    engine = create_db_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()


def test_a_newer_database_is_refused_and_left_as_it_was(db_url):
    _make_newer(db_url)
    schema = _reflect(db_url)

    store = Store(db_url)
    with pytest.raises(MigrationError) as refused:
        store.init_schema()
    store.close()

    message = str(refused.value)
    assert "schema revision 0999" in message and "never downgrades" in message
    assert _version_rows(db_url) == ["0999"]
    assert _reflect(db_url) == schema


def test_server_run_and_db_commands_refuse_a_newer_database(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'control-plane.db'}"
    _make_newer(url)

    for argv in (["server", "db", "upgrade"], ["server", "db", "current"]):
        result = run_main([*argv, "--data-dir", str(data)])
        assert result.returncode == 1, result
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert "schema revision 0999" in result.stderr and "never downgrades" in result.stderr
    assert _version_rows(url) == ["0999"]


# -- replicas migrating at once ------------------------------------------------------------


@pytest.mark.parametrize("previous", [False, True], ids=["empty", "previous-release"])
def test_concurrent_upgrades_migrate_once(db_url, previous):
    if previous:
        _previous_release_database(db_url)
    before = _rows(db_url) if previous else None
    replicas = 4
    barrier = threading.Barrier(replicas, timeout=60)

    def start_replica() -> Action:
        barrier.wait()
        return migrate.upgrade(db_url).action

    with ThreadPoolExecutor(replicas) as pool:
        started = [pool.submit(start_replica) for _ in range(replicas)]
        # A waiting replica gives up after migrate.LOCK_TIMEOUT_SECONDS; this is beyond it.
        actions = [f.result(timeout=migrate.LOCK_TIMEOUT_SECONDS + 60) for f in started]

    first = Action.ADOPT if previous else Action.CREATE
    assert sorted(a.value for a in actions) == sorted(
        [first.value] + [Action.NOTHING.value] * (replicas - 1)
    )
    assert _version_rows(db_url) == [HEAD]
    if previous:
        assert _rows(db_url) == before


@pytest.mark.postgres
def test_a_replica_waits_for_the_migration_lock_held_by_another(pg_url):
    """The advisory lock, seen from PostgreSQL: a second migrator waits on it, then finds
    the database current and does nothing."""
    holder = sa.create_engine(pg_url)
    try:
        with holder.connect() as conn, conn.begin() as holding:
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": migrate.ADVISORY_LOCK_KEY}
            )
            with ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(migrate.upgrade, pg_url)
                deadline = time.monotonic() + 30
                while not _advisory_lock_waiters(conn):
                    assert time.monotonic() < deadline, "the migrator never waited on the lock"
                    assert not waiting.done(), waiting.result()
                    time.sleep(0.05)
                # While it waits, create the schema as the lock holder: it must find it.
                migrate_in(conn)
                holding.commit()
                assert waiting.result(timeout=60).action is Action.NOTHING
    finally:
        holder.dispose()
    assert _version_rows(pg_url) == [HEAD]


def _advisory_lock_waiters(conn: sa.Connection) -> int:
    return conn.execute(
        sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    ).scalar_one()


def migrate_in(conn: sa.Connection) -> None:
    """Run the revisions on a connection whose transaction the caller holds."""
    from alembic import command

    command.upgrade(migrate._config(conn), "heads")
