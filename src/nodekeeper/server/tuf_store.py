"""The TUF metadata rows (table ``tuf_metadata``, revision 0005; decision 084).

One row per signed version of a role, holding the exact bytes that were signed and are
served (re-serializing parsed metadata does not give the same bytes, and the snapshot and
timestamp carry the sha256 of the bytes they name). (role, version) is the primary key, so
two replicas that sign the same next version race on the insert and one wins; the other's
transaction rolls back whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .store import Store, tuf_metadata_table

_t = tuf_metadata_table.c

# How many versions of snapshot and targets are kept at least, beyond those that an
# unexpired timestamp (or a snapshot such a timestamp names) still points at: a keeper
# that read timestamp.json a moment before a publish fetches the snapshot and targets it
# named a moment after.
KEEP_AT_LEAST = 3


@dataclass(frozen=True)
class Row:
    role: str
    version: int
    data: bytes
    expires: float
    created_at: float


def _row(found) -> Row | None:
    if found is None:
        return None
    return Row(found.role, found.version, bytes(found.data), found.expires, found.created_at)


def latest(conn: Connection, role: str) -> Row | None:
    return _row(
        conn.execute(
            sa.select(tuf_metadata_table)
            .where(_t.role == role)
            .order_by(_t.version.desc())
            .limit(1)
        ).first()
    )


def get(conn: Connection, role: str, version: int) -> Row | None:
    return _row(
        conn.execute(
            sa.select(tuf_metadata_table).where(_t.role == role, _t.version == version)
        ).first()
    )


def insert(conn: Connection, role: str, version: int, data: bytes, expires: float, now: float):
    """Raises sqlalchemy's IntegrityError when that version exists (another replica or
    a concurrent publish signed it first)."""
    conn.execute(
        tuf_metadata_table.insert().values(
            role=role, version=version, data=data, expires=expires, created_at=now
        )
    )


def latest_versions(store: Store) -> dict[str, tuple[int, float]]:
    """Each role's newest version and its expiry: what `keys expiries`, /metrics and the
    dashboard show."""
    newest = (
        sa.select(_t.role, sa.func.max(_t.version).label("version")).group_by(_t.role).subquery()
    )
    query = sa.select(_t.role, _t.version, _t.expires).join(
        newest, sa.and_(_t.role == newest.c.role, _t.version == newest.c.version)
    )
    with store.engine.connect() as conn:
        return {role: (version, expires) for role, version, expires in conn.execute(query)}


def prune(store: Store, now: float) -> int:
    """Drop what no keeper can ask for any more; returns how many rows went.

    Kept: every root (keepers walk the chain from the root they were shipped with); the
    newest timestamp and every unexpired one (and only the newest is served); each
    snapshot an unexpired timestamp names, each targets such a snapshot names, and the
    newest KEEP_AT_LEAST of both. Idempotent, so every replica may run it."""
    with store.engine.begin() as conn:
        newest_ts = latest(conn, "timestamp")
        if newest_ts is None:
            return 0
        timestamps = conn.execute(
            sa.select(_t.version, _t.data).where(
                _t.role == "timestamp", sa.or_(_t.expires > now, _t.version == newest_ts.version)
            )
        ).all()
        snapshots = {_named(data, "snapshot.json") for _, data in timestamps}
        snapshots.discard(None)
        snap_rows = conn.execute(
            sa.select(_t.version, _t.data).where(
                _t.role == "snapshot", _t.version.in_(sorted(snapshots))
            )
        ).all()
        targets = {_named(data, "targets.json") for _, data in snap_rows}
        targets.discard(None)
        removed = conn.execute(
            tuf_metadata_table.delete().where(
                _t.role == "timestamp",
                _t.expires <= now,
                _t.version != newest_ts.version,
            )
        ).rowcount
        for role, keep in (("snapshot", snapshots), ("targets", targets)):
            floor = _floor(conn, role)
            removed += conn.execute(
                tuf_metadata_table.delete().where(
                    _t.role == role, _t.version < floor, _t.version.not_in(sorted(keep))
                )
            ).rowcount
        return removed


def _floor(conn: Connection, role: str) -> int:
    newest = latest(conn, role)
    return 0 if newest is None else newest.version - KEEP_AT_LEAST + 1


def _named(data: bytes, name: str) -> int | None:
    """The version of ``name`` that a stored timestamp or snapshot names. Read as plain
    JSON: these are our own rows, verified when they were signed."""
    try:
        signed = json.loads(data)["signed"]
        meta = signed["meta"][name]
        return int(meta["version"])
    except (ValueError, KeyError, TypeError):
        return None
