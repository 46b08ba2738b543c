"""Control-plane state through SQLAlchemy Core: an SQLite file by default, PostgreSQL by URL.

Every admin change runs in one transaction that also bumps a generation counter and
writes an audit row, so replicas sharing one database notice a change by polling a
single integer, and a rejected change leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from nodekeeper.version.nodeid import parse_node_id
from nodekeeper.version.reports import NOT_FAILURES, Report

from . import policy, ramp
from .models import ArtifactRecord, ProcessRecord, ReleaseRecord, RolloutRecord, Snapshot

metadata = sa.MetaData()

meta_table = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
releases_table = sa.Table(
    "releases",
    metadata,
    sa.Column("process", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)
artifacts_table = sa.Table(
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
minimums_table = sa.Table(
    "minimums",
    metadata,
    sa.Column("process", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(128), nullable=False),
)
rollouts_table = sa.Table(
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
audit_table = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("remote", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

reports_table = sa.Table(
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
node_versions_table = sa.Table(
    "node_versions",
    metadata,
    sa.Column("node_id", sa.String(64), primary_key=True),
    sa.Column("process", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(128), nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False, index=True),
)

GENERATION = "generation"


def create_db_engine(url: str) -> Engine:
    """An engine with the settings each back end needs for several writers."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_db_engine(url)

    def init_schema(self) -> None:
        metadata.create_all(self.engine)
        if self._read_generation_or_none() is None:
            # Two replicas starting together may both try; one insert wins.
            with contextlib.suppress(sa.exc.IntegrityError), self.engine.begin() as conn:
                conn.execute(meta_table.insert().values(key=GENERATION, value=0))

    def _read_generation_or_none(self) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == GENERATION)
            ).scalar_one_or_none()

    def close(self) -> None:
        self.engine.dispose()

    # -- reads -----------------------------------------------------------------------

    def generation(self) -> int:
        with self.engine.connect() as conn:
            return _generation(conn)

    def snapshot(self, now: float) -> Snapshot:
        with self.engine.connect() as conn:
            return _read_snapshot(conn, now)

    def audit_entries(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(audit_table).order_by(audit_table.c.id.desc()).limit(limit)
            ).mappings()
            return [{**row, "detail": json.loads(row["detail"])} for row in rows]

    # -- admin changes ---------------------------------------------------------------

    def publish_release(
        self,
        process: str,
        version: str,
        artifacts: Iterable[ArtifactRecord],
        *,
        now: float,
        remote: str,
    ) -> None:
        artifacts = list(artifacts)
        with self.engine.begin() as conn:
            snap = _read_snapshot(conn, now)
            policy.check_new_release(snap.processes.get(process), version)
            conn.execute(
                releases_table.insert().values(process=process, version=version, created_at=now)
            )
            conn.execute(
                artifacts_table.insert(),
                [
                    {
                        "process": process,
                        "version": version,
                        "platform": a.platform,
                        "sha256": a.sha256,
                        "size": a.size,
                        "url": a.url,
                        "stored_name": a.stored_name,
                    }
                    for a in artifacts
                ],
            )
            _record(
                conn,
                now,
                remote,
                "release.publish",
                {
                    "process": process,
                    "version": version,
                    "artifacts": {
                        a.platform: {"sha256": a.sha256, "size": a.size, "url": a.url}
                        for a in artifacts
                    },
                },
            )

    def set_minimum(self, process: str, version: str, *, now: float, remote: str) -> None:
        with self.engine.begin() as conn:
            record = policy.require_process(_read_snapshot(conn, now).processes, process)
            policy.check_minimum(record, version)
            conn.execute(minimums_table.delete().where(minimums_table.c.process == process))
            conn.execute(minimums_table.insert().values(process=process, version=version))
            _record(
                conn,
                now,
                remote,
                "minimum.set",
                {"process": process, "version": version, "was": record.minimum},
            )

    def start_rollout(
        self,
        process: str,
        version: str,
        rate_per_day: float | None,
        *,
        now: float,
        remote: str,
        seed: str | None = None,
    ) -> RolloutRecord:
        policy.check_rate(rate_per_day)
        seed = seed or secrets.token_hex(32)  # a fresh seed reshuffles who goes first
        with self.engine.begin() as conn:
            record = policy.require_process(_read_snapshot(conn, now).processes, process)
            policy.check_rollout_target(record, version)
            state = ramp.start(now, rate_per_day)
            result = conn.execute(
                rollouts_table.insert().values(
                    process=process,
                    version=version,
                    seed=seed,
                    rate_per_day=state.rate_per_day,
                    base_percent=state.base_percent,
                    segment_start=state.segment_start,
                    started_at=now,
                )
            )
            _record(
                conn,
                now,
                remote,
                "rollout.start",
                {"process": process, "version": version, "rate_per_day": rate_per_day},
            )
            return RolloutRecord(
                id=result.inserted_primary_key[0],
                process=process,
                version=version,
                seed=seed,
                ramp=state,
                started_at=now,
            )

    def change_rollout(
        self,
        process: str,
        action: str,
        change: Callable[[ramp.RampState], ramp.RampState],
        *,
        now: float,
        remote: str,
        detail: dict[str, Any] | None = None,
    ) -> RolloutRecord:
        """Apply a pure ramp change (pause, resume, set) to the current rollout."""
        with self.engine.begin() as conn:
            record = policy.require_process(_read_snapshot(conn, now).processes, process)
            rollout = policy.require_rollout(record)
            before = ramp.percent_at(rollout.ramp, now)
            state = change(rollout.ramp)
            conn.execute(
                rollouts_table.update()
                .where(rollouts_table.c.id == rollout.id)
                .values(
                    rate_per_day=state.rate_per_day,
                    base_percent=state.base_percent,
                    segment_start=state.segment_start,
                )
            )
            _record(
                conn,
                now,
                remote,
                action,
                {
                    "process": process,
                    "version": rollout.version,
                    "percent_before": round(before, 4),
                    "percent_after": round(ramp.percent_at(state, now), 4),
                    **(detail or {}),
                },
            )
            return RolloutRecord(
                id=rollout.id,
                process=process,
                version=rollout.version,
                seed=rollout.seed,
                ramp=state,
                started_at=rollout.started_at,
            )


class ReportOutcome:
    STORED = "stored"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"


def add_report(
    store: Store, report: Report, *, received_at: float, remote: str, per_minute: int
) -> str:
    """Store one verified report; refuses a node over its rate, ignores a re-send."""
    node_hex = parse_node_id(report.node_id).hex()
    with store.engine.begin() as conn:
        recent = conn.execute(
            sa.select(sa.func.count())
            .select_from(reports_table)
            .where(reports_table.c.node_id == node_hex)
            .where(reports_table.c.received_at > received_at - 60)
        ).scalar_one()
        seen = conn.execute(
            sa.select(reports_table.c.id)
            .where(reports_table.c.node_id == node_hex)
            .where(reports_table.c.report_id == report.report_id)
        ).first()
        if seen is not None:
            return ReportOutcome.DUPLICATE
        if recent >= per_minute:
            return ReportOutcome.RATE_LIMITED
        conn.execute(
            reports_table.insert().values(
                report_id=report.report_id,
                node_id=node_hex,
                process=report.process,
                version=report.version,
                target_version=report.target_version,
                kind=report.kind,
                message=report.message,
                details=json.dumps(report.details, sort_keys=True),
                at=report.at,
                received_at=received_at,
                remote=remote,
            )
        )
        key = (node_versions_table.c.node_id == node_hex) & (
            node_versions_table.c.process == report.process
        )
        updated = conn.execute(
            node_versions_table.update()
            .where(key)
            .values(version=report.version, last_seen=received_at)
        ).rowcount
        if not updated:
            conn.execute(
                node_versions_table.insert().values(
                    node_id=node_hex,
                    process=report.process,
                    version=report.version,
                    last_seen=received_at,
                )
            )
    return ReportOutcome.STORED


def version_summary(store: Store, since: float) -> dict[str, dict[str, dict[str, Any]]]:
    """Per process and version: nodes that last said they run it, and failures aimed at it."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}

    def entry(process: str, version: str) -> dict[str, Any]:
        return summary.setdefault(process, {}).setdefault(
            version, {"nodes": 0, "failures": 0, "failures_by_kind": {}}
        )

    with store.engine.connect() as conn:
        nv = node_versions_table.c
        for process, version, count in conn.execute(
            sa.select(nv.process, nv.version, sa.func.count())
            .where(nv.last_seen > since)
            .group_by(nv.process, nv.version)
        ):
            entry(process, version)["nodes"] = count
        r = reports_table.c
        aimed_at = sa.func.coalesce(r.target_version, r.version)
        for process, version, kind, count in conn.execute(
            sa.select(r.process, aimed_at, r.kind, sa.func.count())
            .where(r.received_at > since)
            .where(r.kind.not_in(sorted(NOT_FAILURES)))
            .group_by(r.process, aimed_at, r.kind)
        ):
            e = entry(process, version)
            e["failures"] += count
            e["failures_by_kind"][kind] = count
    return summary


def recent_reports(store: Store, limit: int, failures_only: bool) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        query = sa.select(reports_table).order_by(reports_table.c.id.desc()).limit(limit)
        if failures_only:
            query = query.where(reports_table.c.kind.not_in(sorted(NOT_FAILURES)))
        rows = conn.execute(query).mappings()
        return [{**row, "details": json.loads(row["details"])} for row in rows]


def prune_reports(store: Store, before: float) -> int:
    with store.engine.begin() as conn:
        return conn.execute(
            reports_table.delete().where(reports_table.c.received_at < before)
        ).rowcount


def _generation(conn: Connection) -> int:
    return int(
        conn.execute(
            sa.select(meta_table.c.value).where(meta_table.c.key == GENERATION)
        ).scalar_one()
    )


def _record(conn: Connection, now: float, remote: str, action: str, detail: dict) -> None:
    """Audit the change and bump the generation, inside the change's transaction."""
    conn.execute(
        audit_table.insert().values(
            at=now, remote=remote, action=action, detail=json.dumps(detail, sort_keys=True)
        )
    )
    conn.execute(
        meta_table.update()
        .where(meta_table.c.key == GENERATION)
        .values(value=meta_table.c.value + 1)
    )


def _read_snapshot(conn: Connection, now: float) -> Snapshot:
    generation = _generation(conn)
    releases: dict[str, dict[str, ReleaseRecord]] = {}
    for row in conn.execute(sa.select(releases_table)).mappings():
        releases.setdefault(row["process"], {})[row["version"]] = ReleaseRecord(
            process=row["process"], version=row["version"], created_at=row["created_at"]
        )
    for row in conn.execute(sa.select(artifacts_table)).mappings():
        release = releases[row["process"]][row["version"]]
        release.artifacts[row["platform"]] = ArtifactRecord(
            platform=row["platform"],
            sha256=row["sha256"],
            size=row["size"],
            url=row["url"],
            stored_name=row["stored_name"],
        )
    minimums = {
        row["process"]: row["version"] for row in conn.execute(sa.select(minimums_table)).mappings()
    }
    rollouts: dict[str, list[RolloutRecord]] = {}
    for row in conn.execute(
        sa.select(rollouts_table).order_by(rollouts_table.c.id.desc())
    ).mappings():
        rollouts.setdefault(row["process"], []).append(
            RolloutRecord(
                id=row["id"],
                process=row["process"],
                version=row["version"],
                seed=row["seed"],
                ramp=ramp.RampState(
                    base_percent=row["base_percent"],
                    rate_per_day=row["rate_per_day"],
                    segment_start=row["segment_start"],
                ),
                started_at=row["started_at"],
            )
        )
    processes = {}
    for name, by_version in releases.items():
        history = rollouts.get(name, [])
        completed = next(
            (r.version for r in history if ramp.phase(r.ramp, now) == "complete"), None
        )
        processes[name] = ProcessRecord(
            name=name,
            explicit_minimum=minimums.get(name),
            releases=by_version,
            rollout=history[0] if history else None,
            last_completed=completed,
        )
    return Snapshot(generation=generation, processes=processes)
