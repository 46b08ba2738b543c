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
from .models import (
    ArtifactRecord,
    PauseRecord,
    ProcessRecord,
    ReleaseRecord,
    RolloutRecord,
    Snapshot,
)
from .rollout_plan import Plan

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
    # Revision 0002 (decisions 078, 079): why it is paused, an abort, a staged plan, the
    # latest health judgement. All nullable: a rollout row of 0001 means none of them.
    sa.Column("paused_by", sa.String(16), nullable=True),  # "auto" | "operator"
    sa.Column("paused_at", sa.Float, nullable=True),
    sa.Column("pause_why", sa.Text, nullable=True),
    sa.Column("pause_detail", sa.Text, nullable=True),  # JSON: numbers, deciding reports
    sa.Column("aborted_at", sa.Float, nullable=True),
    sa.Column("plan_stages", sa.Text, nullable=True),  # JSON list of percents
    sa.Column("soak_seconds", sa.Float, nullable=True),
    sa.Column("stage", sa.Integer, nullable=True),
    sa.Column("stage_since", sa.Float, nullable=True),
    sa.Column("forgive_before", sa.Float, nullable=True),
    sa.Column("health", sa.Text, nullable=True),  # JSON: the latest verdict, any replica's
    sa.Column("health_at", sa.Float, nullable=True),
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

# "Not a failure" as literal SQL, the same text in the partial index's predicate and in
# the queries that count failures: PostgreSQL uses a partial index only when it can prove
# the query's WHERE implies the index's, and with bound parameters it cannot.
FAILURE_KINDS_SQL = sa.text(
    "kind NOT IN (" + ", ".join(f"'{kind}'" for kind in sorted(NOT_FAILURES)) + ")"
)

FAILURES_INDEX_COLUMNS = ("received_at", "process", "kind", "version", "target_version")

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
    # Revision 0004 (decision 081): the failures of a week without the heartbeats, with
    # every column the failure counts read, so PostgreSQL answers from the index alone.
    sa.Index(
        "ix_reports_failures",
        *FAILURES_INDEX_COLUMNS,
        postgresql_where=FAILURE_KINDS_SQL,
        sqlite_where=FAILURE_KINDS_SQL,
    ),
)
node_versions_table = sa.Table(
    "node_versions",
    metadata,
    sa.Column("node_id", sa.String(64), primary_key=True),
    sa.Column("process", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(128), nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False, index=True),
)

# The reachability dial-back (decision 082, revision 0003): one row per node, its last
# check, so the rate limits hold across replicas (server/reachability_store.py).
reachability_table = sa.Table(
    "reachability",
    metadata,
    sa.Column("node_id", sa.String(64), primary_key=True),  # hex
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("address", sa.String(320), nullable=False),
    sa.Column("checked_at", sa.Float, nullable=False),
    sa.Column("result", sa.Text, nullable=True),  # JSON of the answer; null while checking
    sa.Index("ix_reachability_source_checked", "source", "checked_at"),
)

# Signed releases (decisions 083, 084; revision 0005): the TUF metadata this control plane
# serves, the exact signed bytes of every version kept. (role, version) is the primary key:
# two replicas signing the same next version race on it and one insert wins.
tuf_metadata_table = sa.Table(
    "tuf_metadata",
    metadata,
    sa.Column("role", sa.String(16), primary_key=True),  # root, targets, snapshot, timestamp
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("expires", sa.Float, nullable=False),  # the signed expiry, epoch seconds
    sa.Column("created_at", sa.Float, nullable=False),
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
        """Create or upgrade the tables through the schema revisions (decision 074);
        raises migrate.MigrationError for a database newer than this code."""
        from .migrate import upgrade  # migrate builds on this module's engine settings

        upgrade(self.url)
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
        also: Callable[[Connection], None] | None = None,
    ) -> None:
        """``also`` runs in the same transaction (the signed targets of decision 084), so
        a release and its signatures are stored together or not at all."""
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
            if also is not None:
                also(conn)

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
        plan: Plan | None = None,
    ) -> RolloutRecord:
        """A new rollout; with ``plan`` it starts at the plan's first stage and moves
        through the stages by itself (decision 079), with a rate it ramps linearly."""
        policy.check_rate(rate_per_day)
        policy.check_plan_or_rate(rate_per_day, plan is not None)
        seed = seed or secrets.token_hex(32)  # a fresh seed reshuffles who goes first
        with self.engine.begin() as conn:
            record = policy.require_process(_read_snapshot(conn, now).processes, process)
            policy.check_rollout_target(record, version)
            first = plan.percent(0) if plan else 0.0
            state = ramp.start(now, rate_per_day, first)
            staged = {}
            if plan is not None:
                staged = {
                    "plan_stages": json.dumps(list(plan.stages)),
                    "soak_seconds": plan.soak_seconds,
                    "stage": 0,
                    "stage_since": now,
                }
            result = conn.execute(
                rollouts_table.insert().values(
                    process=process,
                    version=version,
                    seed=seed,
                    rate_per_day=state.rate_per_day,
                    base_percent=state.base_percent,
                    segment_start=state.segment_start,
                    started_at=now,
                    **staged,
                )
            )
            detail: dict[str, Any] = {
                "process": process,
                "version": version,
                "rate_per_day": rate_per_day,
            }
            if plan is not None:
                detail |= {"stages": list(plan.stages), "soak_seconds": plan.soak_seconds}
            _record(conn, now, remote, "rollout.start", detail)
            return RolloutRecord(
                id=result.inserted_primary_key[0],
                process=process,
                version=version,
                seed=seed,
                ramp=state,
                started_at=now,
                plan=plan,
                stage=0 if plan else None,
                stage_since=now if plan else None,
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
        """Apply a pure ramp change (pause, resume, set) to the current rollout; the
        operator's pause and resume also record who paused and what is forgiven (078)."""
        with self.engine.begin() as conn:
            record = policy.require_process(_read_snapshot(conn, now).processes, process)
            rollout = policy.require_rollout(record)
            before = ramp.percent_at(rollout.ramp, now)
            state = change(rollout.ramp)
            columns = _operator_columns(action, rollout, state, now, remote)
            conn.execute(
                rollouts_table.update()
                .where(rollouts_table.c.id == rollout.id)
                .values(
                    rate_per_day=state.rate_per_day,
                    base_percent=state.base_percent,
                    segment_start=state.segment_start,
                    **columns,
                )
            )
            if action == "rollout.resume" and rollout.pause is not None:
                detail = {
                    **(detail or {}),
                    "was_paused_by": rollout.pause.by,
                    "forgive_before": now,
                }
            if action == "rollout.set" and rollout.plan is not None:
                detail = {**(detail or {}), "plan_ended": list(rollout.plan.stages)}
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
            return _read_rollout(conn, rollout.id)

    def abort_rollout(self, process: str, *, now: float, remote: str) -> RolloutRecord:
        """The cursor goes to 0 and the rollout is no longer offered; nodes that already
        committed its version keep it (they never go back: decision 078)."""
        with self.engine.begin() as conn:
            record = policy.require_process(_read_snapshot(conn, now).processes, process)
            rollout = policy.require_rollout(record)
            before = ramp.percent_at(rollout.ramp, now)
            conn.execute(
                rollouts_table.update()
                .where(rollouts_table.c.id == rollout.id)
                .values(base_percent=0.0, segment_start=None, aborted_at=now)
            )
            _record(
                conn,
                now,
                remote,
                "rollout.abort",
                {
                    "process": process,
                    "version": rollout.version,
                    "percent_before": round(before, 4),
                    "percent_after": 0.0,
                    "was_paused_by": rollout.pause.by if rollout.pause else None,
                },
            )
            return _read_rollout(conn, rollout.id)

    # -- the health check's changes (decisions 078, 079) ------------------------------

    def auto_pause(
        self,
        rollout: RolloutRecord,
        *,
        why: str,
        detail: dict[str, Any],
        now: float,
    ) -> bool:
        """Pause ``rollout`` for the health check, once across replicas.

        One conditional UPDATE: only the row exactly as it was judged (running, not
        aborted, the same ramp segment and stage) changes. Several replicas judging the
        same rollout race on it; the database lets one UPDATE change the row and the
        others find it changed (rowcount 0). Only the winner writes the audit row, in
        the same transaction; it returns True and sends the alert."""
        r = rollouts_table.c
        state = rollout.ramp
        if state.segment_start is None:
            return False
        percent = ramp.percent_at(state, now)
        with self.engine.begin() as conn:
            changed = conn.execute(
                rollouts_table.update()
                .where(r.id == rollout.id)
                .where(r.segment_start == state.segment_start)
                .where(r.base_percent == state.base_percent)
                .where(r.aborted_at.is_(None))
                .values(
                    base_percent=percent,
                    segment_start=None,
                    paused_by="auto",
                    paused_at=now,
                    pause_why=why,
                    pause_detail=json.dumps(detail, sort_keys=True),
                )
            ).rowcount
            if changed != 1:
                return False
            _record(
                conn,
                now,
                "auto",
                "rollout.auto_pause",
                {
                    "process": rollout.process,
                    "version": rollout.version,
                    "percent": round(percent, 4),
                    "why": why,
                    **detail,
                },
            )
            return True

    def advance_stage(self, rollout: RolloutRecord, to_stage: int, *, why: str, now: float) -> bool:
        """Move a staged rollout to ``to_stage``, once across replicas (a conditional
        UPDATE on the stage it was judged in, running); the winner audits it."""
        plan = rollout.plan
        if plan is None or rollout.stage is None or rollout.ramp.segment_start is None:
            return False
        r = rollouts_table.c
        with self.engine.begin() as conn:
            changed = conn.execute(
                rollouts_table.update()
                .where(r.id == rollout.id)
                .where(r.stage == rollout.stage)
                .where(r.segment_start == rollout.ramp.segment_start)
                .where(r.aborted_at.is_(None))
                .values(
                    stage=to_stage,
                    stage_since=now,
                    base_percent=plan.percent(to_stage),
                    segment_start=now,
                )
            ).rowcount
            if changed != 1:
                return False
            _record(
                conn,
                now,
                "auto",
                "rollout.stage",
                {
                    "process": rollout.process,
                    "version": rollout.version,
                    "stage_before": rollout.stage,
                    "stage_after": to_stage,
                    "percent_before": plan.percent(rollout.stage),
                    "percent_after": plan.percent(to_stage),
                    "why": why,
                },
            )
            return True

    def record_health(self, rollout_id: int, health: dict[str, Any], *, now: float) -> None:
        """The latest judgement, for `rollout status`: not an admin change (no audit row,
        no new generation: the announcement does not depend on it)."""
        with self.engine.begin() as conn:
            conn.execute(
                rollouts_table.update()
                .where(rollouts_table.c.id == rollout_id)
                .values(health=json.dumps(health, sort_keys=True), health_at=now)
            )

    def auto_pause_counts(self) -> dict[str, int]:
        """Auto-pauses per process since the database began (from the audit rows, so
        every replica says the same and a restart forgets nothing)."""
        counts: dict[str, int] = {}
        with self.engine.connect() as conn:
            for (detail,) in conn.execute(
                sa.select(audit_table.c.detail).where(audit_table.c.action == "rollout.auto_pause")
            ):
                process = json.loads(detail).get("process", "")
                counts[process] = counts.get(process, 0) + 1
        return counts


def _operator_columns(
    action: str, rollout: RolloutRecord, state: ramp.RampState, now: float, remote: str
) -> dict[str, Any]:
    """The bookkeeping columns an operator's pause, resume or set changes."""
    if action == "rollout.pause" and rollout.pause is None and state.paused:
        return {
            "paused_by": "operator",
            "paused_at": now,
            "pause_why": f"paused by the operator ({remote})",
            "pause_detail": None,
        }
    if action == "rollout.resume" and rollout.pause is not None:
        # Resuming means the operator has seen the failures so far: they are forgiven,
        # the judge counts what comes after (decision 078); a staged plan soaks its
        # current stage again from now.
        columns: dict[str, Any] = {
            "paused_by": None,
            "paused_at": None,
            "pause_why": None,
            "pause_detail": None,
            "forgive_before": now,
        }
        if rollout.plan is not None:
            columns["stage_since"] = now
        return columns
    if action == "rollout.set" and rollout.plan is not None:
        # The operator takes the percent over: the plan ends, the rollout is by hand.
        return {"plan_stages": None, "soak_seconds": None, "stage": None, "stage_since": None}
    return {}


class ReportOutcome:
    STORED = "stored"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"


# The statements of report ingestion, built once: building them per report cost more
# CPU than running them (decision 081 measured 4.9 ms of replica CPU per report before,
# most of it in SQLAlchemy statement construction and five round trips).
_r = reports_table.c
_NODE_RECENT_AND_SEEN = sa.select(
    sa.func.coalesce(sa.func.sum(sa.case((_r.received_at > sa.bindparam("since"), 1), else_=0)), 0),
    sa.func.coalesce(
        sa.func.max(sa.case((_r.report_id == sa.bindparam("report_id"), 1), else_=0)), 0
    ),
).where(
    _r.node_id == sa.bindparam("node_id"),
    sa.or_(_r.received_at > sa.bindparam("since"), _r.report_id == sa.bindparam("report_id")),
)
_INSERT_REPORT = reports_table.insert()


def _node_version_upsert(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (node_id, process) DO UPDATE: one statement, both back ends."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(node_versions_table)
    return stmt.on_conflict_do_update(
        index_elements=[node_versions_table.c.node_id, node_versions_table.c.process],
        set_={"version": stmt.excluded.version, "last_seen": stmt.excluded.last_seen},
    )


_UPSERTS: dict[str, Any] = {}


def add_report(
    store: Store, report: Report, *, received_at: float, remote: str, per_minute: int
) -> str:
    """Store one verified report; refuses a node over its rate, ignores a re-send."""
    node_hex = parse_node_id(report.node_id).hex()
    dialect = store.engine.dialect.name
    upsert = _UPSERTS.get(dialect)
    if upsert is None:
        upsert = _UPSERTS[dialect] = _node_version_upsert(dialect)
    with store.engine.begin() as conn:
        # The node's reports of the last minute and whether this one came before, in one
        # index lookup (node_id, received_at) / (node_id, report_id).
        recent, seen = conn.execute(
            _NODE_RECENT_AND_SEEN,
            {"node_id": node_hex, "since": received_at - 60, "report_id": report.report_id},
        ).one()
        if seen:
            return ReportOutcome.DUPLICATE
        if recent >= per_minute:
            return ReportOutcome.RATE_LIMITED
        conn.execute(
            _INSERT_REPORT,
            {
                "report_id": report.report_id,
                "node_id": node_hex,
                "process": report.process,
                "version": report.version,
                "target_version": report.target_version,
                "kind": report.kind,
                "message": report.message,
                "details": json.dumps(report.details, sort_keys=True),
                "at": report.at,
                "received_at": received_at,
                "remote": remote,
            },
        )
        conn.execute(
            upsert,
            {
                "node_id": node_hex,
                "process": report.process,
                "version": report.version,
                "last_seen": received_at,
            },
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
        for process, version, count in conn.execute(nodes_per_version_query(since)):
            entry(process, version)["nodes"] = count
        for process, version, kind, count in conn.execute(failures_per_version_query(since)):
            e = entry(process, version)
            e["failures"] += count
            e["failures_by_kind"][kind] = count
    return summary


def nodes_per_version_query(since: float) -> sa.Select:
    """Nodes that last said they run each version (one row per node: a small scan)."""
    nv = node_versions_table.c
    return (
        sa.select(nv.process, nv.version, sa.func.count())
        .where(nv.last_seen > since)
        .group_by(nv.process, nv.version)
    )


def failures_per_version_query(since: float) -> sa.Select:
    """Failure reports since ``since`` per process, version aimed at and kind. Its WHERE
    is the partial index ix_reports_failures' predicate (FAILURE_KINDS_SQL), so the
    database reads only the failures, not the week of heartbeats (decision 081)."""
    r = reports_table.c
    aimed_at = sa.func.coalesce(r.target_version, r.version)
    return (
        sa.select(r.process, aimed_at, r.kind, sa.func.count())
        .where(r.received_at > since)
        .where(FAILURE_KINDS_SQL)
        .group_by(r.process, aimed_at, r.kind)
    )


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


def _rollout_record(row: Any) -> RolloutRecord:
    pause = None
    if row["paused_by"] is not None:
        pause = PauseRecord(
            by=row["paused_by"],
            at=row["paused_at"],
            why=row["pause_why"] or "",
            detail=json.loads(row["pause_detail"]) if row["pause_detail"] else {},
        )
    plan = None
    if row["plan_stages"] is not None:
        plan = Plan(tuple(json.loads(row["plan_stages"])), row["soak_seconds"])
    return RolloutRecord(
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
        pause=pause,
        aborted_at=row["aborted_at"],
        plan=plan,
        stage=row["stage"],
        stage_since=row["stage_since"],
        forgive_before=row["forgive_before"],
        health=json.loads(row["health"]) if row["health"] else None,
    )


def _read_rollout(conn: Connection, rollout_id: int) -> RolloutRecord:
    row = (
        conn.execute(sa.select(rollouts_table).where(rollouts_table.c.id == rollout_id))
        .mappings()
        .one()
    )
    return _rollout_record(row)


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
        rollouts.setdefault(row["process"], []).append(_rollout_record(row))
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
