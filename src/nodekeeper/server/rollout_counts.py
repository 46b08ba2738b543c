"""The numbers the health check judges, counted from the stored reports (decision 078).

For one version of one process since an instant, in distinct nodes:

- **updated** (attempted): nodes that sent any report aimed at the version (the version
  an update tried to reach when it names one, else the version the node ran:
  ``coalesce(target_version, version)``), plus nodes whose latest known version
  (``node_versions``) is it and that were seen in the window;
- **failed**: those of them that sent a report of a counted kind aimed at it
  (``rollout_health.COUNTED_KINDS``).

Nodes whose counted failure arrived before ``forgive_before`` are left out of both: the
operator resumed the rollout after seeing them (decision 078).

What the queries filter on, for the indexes: ``reports`` by ``process``, ``received_at``
(a range), ``coalesce(target_version, version)`` and ``kind``; ``node_versions`` by
``process``, ``version`` and ``last_seen`` (a range).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .rollout_health import COUNTED_KINDS, VersionCounts
from .store import node_versions_table, reports_table

MAX_DECIDING_REPORTS = 10  # the contract's bound on the reports kept with a pause


@dataclass(frozen=True)
class Counted:
    counts: VersionCounts
    deciding: list[dict[str, Any]]  # one counted failure per failed node, oldest first


def _aimed_at():
    r = reports_table.c
    return sa.func.coalesce(r.target_version, r.version)


def _failures(process: str, version: str, since: float) -> sa.Select:
    """Counted failure reports aimed at ``version`` received since ``since``."""
    r = reports_table.c
    return (
        sa.select(r.node_id)
        .where(r.process == process)
        .where(r.received_at >= since)
        .where(_aimed_at() == version)
        .where(r.kind.in_(sorted(COUNTED_KINDS)))
    )


def count_version(
    conn: Connection,
    process: str,
    version: str,
    since: float,
    forgive_before: float | None = None,
) -> Counted:
    """Distinct nodes that attempted ``version`` since ``since`` and those that failed."""
    r, nv = reports_table.c, node_versions_table.c
    attempted = sa.union(
        sa.select(r.node_id.label("node_id"))
        .where(r.process == process)
        .where(r.received_at >= since)
        .where(_aimed_at() == version),
        sa.select(nv.node_id.label("node_id"))
        .where(nv.process == process)
        .where(nv.version == version)
        .where(nv.last_seen >= since),
    ).subquery("attempted")
    failed = _failures(process, version, since).distinct().subquery("failed")
    forgiven = None
    if forgive_before is not None:
        forgiven = _failures(process, version, since).where(r.received_at < forgive_before)

    def count(sub: sa.Subquery) -> int:
        query = sa.select(sa.func.count()).select_from(sub)
        if forgiven is not None:
            query = query.where(sub.c.node_id.not_in(forgiven))
        return int(conn.execute(query).scalar_one())

    updated, failed_n = count(attempted), count(failed)
    deciding_query = (
        sa.select(r.node_id, r.kind, r.at, r.message)
        .where(r.process == process)
        .where(r.received_at >= since)
        .where(_aimed_at() == version)
        .where(r.kind.in_(sorted(COUNTED_KINDS)))
        .order_by(r.received_at, r.id)
        .limit(20 * MAX_DECIDING_REPORTS)  # a crash loop sends many per node
    )
    if forgiven is not None:
        deciding_query = deciding_query.where(r.node_id.not_in(forgiven))
    deciding: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in conn.execute(deciding_query).mappings():
        if row["node_id"] in seen:
            continue
        seen.add(row["node_id"])
        deciding.append(
            {
                "node_id": row["node_id"],
                "kind": row["kind"],
                "at": row["at"],
                "message": row["message"][:500],
            }
        )
        if len(deciding) == MAX_DECIDING_REPORTS:
            break
    # The reads are separate statements: reports arriving in between could make the
    # later ones see more. Keep the numbers consistent with the first counts.
    updated = max(updated, failed_n)
    return Counted(VersionCounts(version, updated, failed_n), deciding[:failed_n])
