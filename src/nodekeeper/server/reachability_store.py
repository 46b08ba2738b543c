"""The reachability checks' rows (decision 082): one per node, in the database every
replica shares, so the rate limits hold however many replicas answer.

``claim`` decides and records in one transaction: a node checked within the interval
is refused, a source address that had its share of nodes checked in the window is
refused, else the node's row takes the new check time. Two replicas claiming the same
node at once: the row's old time is part of the update's condition (and the primary key
guards the insert), so exactly one wins. The per-source count may let one check too many
through when two replicas count at the same instant; that bound is loose by design.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from .reachability_rules import (
    Limits,
    Refusal,
    node_limited,
    node_wait,
    source_limited,
    source_wait,
)
from .store import Store, reachability_table

T = reachability_table.c


def claim(
    store: Store, node_hex: str, source: str, address: str, now: float, limits: Limits
) -> None:
    """Record that a check of ``node_hex`` starts now; raises a 429 Refusal when a limit
    says no."""
    try:
        _claim(store, node_hex, source, address, now, limits)
    except sa.exc.IntegrityError:  # another replica inserted the node's row meanwhile
        raise node_limited(limits.node_interval, limits.node_interval) from None


def _claim(
    store: Store, node_hex: str, source: str, address: str, now: float, limits: Limits
) -> None:
    with store.engine.begin() as conn:
        row = conn.execute(sa.select(T.checked_at, T.result).where(T.node_id == node_hex)).first()
        wait = node_wait(row.checked_at if row else None, now, limits)
        if wait is not None:
            raise node_limited(wait, limits.node_interval)
        recent = conn.execute(
            sa.select(T.checked_at)
            .where(T.source == source)
            .where(T.checked_at > now - limits.source_window)
            .where(T.node_id != node_hex)
        ).scalars()
        wait = source_wait(list(recent), now, limits)
        if wait is not None:
            raise source_limited(wait, limits)
        values = {"source": source, "address": address, "checked_at": now, "result": None}
        if row is None:
            conn.execute(reachability_table.insert().values(node_id=node_hex, **values))
        else:
            won = conn.execute(
                reachability_table.update()
                .where(T.node_id == node_hex)
                .where(T.checked_at == row.checked_at)
                .values(**values)
            ).rowcount
            if not won:
                raise node_limited(limits.node_interval, limits.node_interval)


def finish(store: Store, node_hex: str, result: dict[str, Any]) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            reachability_table.update()
            .where(T.node_id == node_hex)
            .values(result=json.dumps(result, sort_keys=True))
        )


def last_result(store: Store, node_hex: str) -> dict[str, Any] | None:
    with store.engine.connect() as conn:
        text = conn.execute(sa.select(T.result).where(T.node_id == node_hex)).scalar()
    return json.loads(text) if text else None


def prune(store: Store, before: float) -> int:
    with store.engine.begin() as conn:
        return conn.execute(reachability_table.delete().where(T.checked_at < before)).rowcount


__all__ = ["Refusal", "claim", "finish", "last_result", "prune"]
