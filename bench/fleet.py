"""100,000 simulated keepers against real control-plane replicas on PostgreSQL.

    .venv/bin/python bench/fleet.py [--nodes 100000] [--compress 1.5] [--intervals 1.25]
                                    [--replicas 3] [--reports 1000000]

(~15 minutes at the defaults on two cores: 12.5 of them the fleet.)

The fleet (tests/server/fleet.py: the keeper's own schedule, decision, report building
and signing, over a small asyncio HTTP client) restarts all at once and polls nginx on
loopback, which balances over ``--replicas`` real `nodekeeper server run` processes on
one PostgreSQL: a throw-away cluster the bench starts (fsync off), or a fresh database
on NODEKEEPER_TEST_PG_URL when it is set. A rollout ramps during the run.

Time is compressed: every delay a keeper waits is divided by ``--compress``, so the
servers see ``compress`` times the real request rate (printed) and one real-equivalent
minute lasts 60/compress seconds.

Printed side by side, each beside its target or its same-run baseline:
- peak / mean checks per real-equivalent minute over the run after the mass restart;
- p99 latency of GET / and POST /v1/reports: the replicas' own time from nginx's log
  beside what the keepers saw (which includes the load generator's scheduling lag);
- the servers' CPU seconds (from /proc) per 1,000 nodes per real-equivalent hour;
- every replica's GET / body hash and ETag sampled together, mid ramp tick;
- GET /v1/admin/status and the store call behind it over 1,000,000 stored reports,
  without and with revision 0004's partial index, with the query plans.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server.fleet import (  # noqa: E402
    PROCESS,
    FleetConfig,
    make_identities,
    peak_to_mean,
    percentile,
    publish_and_start,
    run_fleet,
    schedule_only_buckets,
    stored_counts,
)
from tests.server.fleet import cpu_seconds as proc_cpu  # noqa: E402
from tests.server.pgcluster import ThrowawayPostgres, drop_database, fresh_database  # noqa: E402
from tests.server.replicas import ReplicaSet, parse_access_log  # noqa: E402

WEEK = 7 * 86_400.0
STATUS_TARGET_MS = 200.0
RATIO_TARGET = 1.25
# The mix of a week of reports from a fleet, for the bulk load: mostly heartbeats (one
# an hour per node would be 16.8M a week for 100,000 nodes; the bench's 1M is the
# issue's figure), update successes, a few per cent failures.
MIX = [
    ("heartbeat", 0.86),
    ("update_succeeded", 0.11),
    ("update_failed", 0.01),
    ("download_failed", 0.005),
    ("rolled_back", 0.005),
    ("crash_loop", 0.005),
    ("hang", 0.0025),
    ("verification_failed", 0.0025),
]


def ms(value: float) -> str:
    return f"{value:.0f} ms"


def psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def bulk_reports(db_url: str, node_hexes: list[str], count: int, now: float) -> float:
    """COPY ``count`` reports of the past week from these nodes; returns seconds taken."""
    import psycopg

    rng = random.Random(7)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    started = time.monotonic()
    columns = (
        "report_id, node_id, process, version, target_version, kind, message, details, at, "
        "received_at, remote"
    )
    with psycopg.connect(psycopg_url(db_url)) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY reports ({columns}) FROM STDIN") as copy:
            for kind in rng.choices(kinds, weights, k=count):
                at = now - 60 - rng.random() * (WEEK - 3600)
                old = rng.random() < 0.3
                version = "0.9.0" if old else "1.0.0"
                target = None if kind == "heartbeat" else "1.0.0"
                if kind == "update_succeeded":
                    version = "1.0.0"
                copy.write_row(
                    (
                        uuid.uuid4().hex,
                        rng.choice(node_hexes),
                        PROCESS,
                        version,
                        target,
                        kind,
                        f"{kind} (bulk)",
                        "{}",
                        at,
                        at,
                        "10.0.0.1",
                    )
                )
        conn.commit()
    return time.monotonic() - started


def report_rows(db_url: str) -> int:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM reports")).scalar_one()
    finally:
        engine.dispose()


def time_status(rs: ReplicaSet, db_url: str, calls: int) -> dict[str, float]:
    """Median and worst ms of GET /v1/admin/status at one replica and of the store call."""
    from nodekeeper.server.admin import REPORT_WINDOW
    from nodekeeper.server.store import Store, version_summary

    store = Store(db_url)
    http = httpx.Client(headers={"Authorization": f"Bearer {rs.token}"}, timeout=120)
    api, call = [], []
    try:
        http.get(rs.replicas[0].url + "/v1/admin/status").raise_for_status()  # warm
        for _ in range(calls):
            t = time.perf_counter()
            http.get(rs.replicas[0].url + "/v1/admin/status").raise_for_status()
            api.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            version_summary(store, time.time() - REPORT_WINDOW)
            call.append((time.perf_counter() - t) * 1000)
    finally:
        http.close()
        store.close()
    return {
        "api_median": statistics.median(api),
        "api_max": max(api),
        "store_median": statistics.median(call),
        "store_max": max(call),
    }


def time_health_counts(db_url: str, since: float, calls: int = 5) -> dict[str, float] | None:
    """Median ms of the auto-pause's judgement counts (``rollout_counts.count_version``,
    decision 078) for the candidate and the fleet's version since the rollout started;
    None in a tree without them."""
    try:
        from nodekeeper.server.rollout_counts import count_version
    except ImportError:
        return None
    engine = sa.create_engine(db_url)
    out = {}
    try:
        with engine.connect() as conn:
            for version in ("1.1.0", "1.0.0"):
                spent = []
                for _ in range(calls):
                    t = time.perf_counter()
                    count_version(conn, PROCESS, version, since)
                    spent.append((time.perf_counter() - t) * 1000)
                out[version] = statistics.median(spent)
    finally:
        engine.dispose()
    return out


def explain(db_url: str) -> list[str]:
    """EXPLAIN ANALYZE of the two queries version_summary runs, as PostgreSQL runs them."""
    from nodekeeper.server.admin import REPORT_WINDOW
    from nodekeeper.server.store import failures_per_version_query, nodes_per_version_query

    engine = sa.create_engine(db_url)
    since = time.time() - REPORT_WINDOW
    out = []
    try:
        with engine.connect() as conn:
            for query in (failures_per_version_query(since), nodes_per_version_query(since)):
                sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
                plan = conn.execute(sa.text("EXPLAIN (ANALYZE, BUFFERS) " + sql)).scalars()
                out += ["    " + line for line in plan]
                out.append("")
    finally:
        engine.dispose()
    return out


def set_failures_index(db_url: str, present: bool) -> float:
    """Drop or (re)build revision 0004's index; returns the seconds it took."""
    from nodekeeper.server.store import reports_table

    index = next(i for i in reports_table.indexes if i.name == "ix_reports_failures")
    engine = sa.create_engine(db_url)
    t = time.monotonic()
    try:
        with engine.begin() as conn:
            if present:
                index.create(conn, checkfirst=True)
            else:
                conn.execute(sa.text("DROP INDEX IF EXISTS ix_reports_failures"))
    finally:
        engine.dispose()
    vacuum_analyze(db_url)
    return time.monotonic() - t


def vacuum_analyze(db_url: str) -> None:
    """VACUUM ANALYZE reports: what autovacuum does to a table that has been taking
    inserts for a week (statistics, and the visibility map an index-only scan needs;
    only the pages written since its last round are not all-visible)."""
    engine = sa.create_engine(db_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("VACUUM ANALYZE reports"))
    finally:
        engine.dispose()


class AgreementSampler(threading.Thread):
    """Every replica's GET / (ETag, body sha256), read together at the middle of each ramp
    tick, when no replica is due to re-render (ticks are far apart from the change poll).
    """

    def __init__(self, rs: ReplicaSet, tick: float, until: float) -> None:
        super().__init__(daemon=True)
        self.rs, self.tick, self.until = rs, tick, until
        self.samples: list[list[tuple[str, str]]] = []

    def run(self) -> None:
        while True:
            now = time.time()
            mid = (now // self.tick) * self.tick + self.tick / 2
            if mid <= now:
                mid += self.tick
            if mid >= self.until:
                return
            time.sleep(mid - now)
            with contextlib.suppress(httpx.HTTPError, OSError):
                self.samples.append([(etag, digest) for etag, digest, _ in self.rs.documents()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--compress", type=float, default=1.5, help="time compression factor")
    parser.add_argument("--intervals", type=float, default=1.25, help="check intervals to run")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--reports", type=int, default=1_000_000, help="reports stored in all")
    parser.add_argument("--rollout-to", type=float, default=30.0, help="percent at the end")
    parser.add_argument("--status-calls", type=int, default=10)
    args = parser.parse_args()
    # A stopped bench still stops its servers and removes its cluster (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    work = Path(tempfile.mkdtemp(prefix="nk-fleet-"))
    work.chmod(0o755)
    base = os.environ.get("NODEKEEPER_TEST_PG_URL")
    pg = None if base else ThrowawayPostgres().start()
    db_url = fresh_database(base or pg.url)
    pg_where = "NODEKEEPER_TEST_PG_URL" if base else "its own cluster (fsync off)"
    duration = FleetConfig(
        url="http://x", nodes=args.nodes, compress=args.compress, intervals=args.intervals
    ).duration
    ramp_tick = 60.0 / args.compress
    rs = ReplicaSet(work, db_url, args.replicas, ramp_tick=ramp_tick, poll_interval=1.0)
    try:
        t = time.monotonic()
        identities = make_identities(args.nodes)
        keys_s = time.monotonic() - t
        rs.start()
        # The week of reports a fleet this size has stored, before the fleet comes: report
        # ingestion then runs against a full table. What the fleet sends comes on top.
        expected_from_fleet = int(args.nodes * (1.2 + args.intervals * 900 / 3600))
        bulk = max(0, args.reports - expected_from_fleet)
        copy_s = bulk_reports(db_url, [i.hex for i in identities], bulk, time.time())
        set_failures_index(db_url, True)  # and VACUUM ANALYZE after the load
        # The rollout reaches --rollout-to percent at the end of the compressed run.
        # (The server takes at most 10,000 %/day: short test runs reach less.)
        rate = min(10_000.0, args.rollout_to / (duration / 86_400))
        rollout_started = time.time()
        publish_and_start(rs.url, rs.token, work, rate_per_day=rate)
        config = FleetConfig(url=rs.url, nodes=args.nodes, compress=args.compress,
                             intervals=args.intervals)  # fmt: skip
        print(
            f"fleet: {args.nodes:,} keepers (ed25519 keys made in {keys_s:.1f} s), "
            f"{args.replicas} replicas behind nginx, PostgreSQL on {pg_where}; "
            f"{bulk:,} reports loaded by COPY in {copy_s:.1f} s"
        )
        print(
            f"time compressed x{args.compress:g}: check interval {config.timing.interval:g} s "
            f"-> {config.scaled_timing().interval:g} s, {args.intervals:g} intervals = "
            f"{duration:.0f} s ({duration * args.compress / 60:.0f} real-equivalent min); "
            f"rollout {rate:,.0f} %/day compressed ({rate / args.compress:,.0f} %/day real)",
            flush=True,
        )

        sampler = AgreementSampler(rs, ramp_tick, time.time() + duration)
        server_pids = rs.server_pids()
        nginx_pids = rs.nginx.pids()
        pg_pids = pg.pids() if pg else []
        before = (proc_cpu(server_pids), proc_cpu(nginx_pids), proc_cpu(pg_pids))
        sampler.start()
        load_before = os.getloadavg()[0]
        t = time.monotonic()
        result = run_fleet(config, identities)
        wall = time.monotonic() - t
        load_after = os.getloadavg()[0]
        pg_pids = pg.pids() if pg else []  # backends come and go; count the survivors
        after = (proc_cpu(server_pids), proc_cpu(nginx_pids), proc_cpu(pg_pids))
        sampler.join()
        rs.nginx.stop()  # flushes its access log
        logged = parse_access_log(rs.nginx.access_log)
        stored = stored_counts(db_url)

        real_hours = duration * args.compress / 3600
        per_k = args.nodes / 1000
        cpu = [(a - b) / per_k / real_hours for a, b in zip(after, before, strict=True)]
        buckets = result.poll_buckets()
        ratio = peak_to_mean(buckets)
        get_up = [e.upstream_seconds for e in logged if e.method == "GET" and e.path == "/"]
        post_up = [e.upstream_seconds for e in logged if e.path == "/v1/reports"]
        polls = zip(result.polls.seconds, result.polls.status, strict=True)
        get_client = [s for s, st in polls if st]
        post_client = result.reports.seconds
        failed_polls = sum(1 for s in result.polls.status if s not in (200, 304))
        by_replica: dict[str, int] = {}
        for e in logged:
            by_replica[e.upstream] = by_replica.get(e.upstream, 0) + 1
        agree = sum(1 for s in sampler.samples if len(set(s)) == 1)
        etags = {s[0][0] for s in sampler.samples}

        rows = report_rows(db_url)
        if rows < args.reports:  # top up to the figure the status is timed over
            bulk_reports(db_url, [i.hex for i in identities], args.reports - rows, time.time())
            rows = report_rows(db_url)
        # Restart the replicas' nginx-less path is not needed: status is asked directly.
        set_failures_index(db_url, False)
        without = time_status(rs, db_url, args.status_calls)
        plan_without = explain(db_url)
        build_s = set_failures_index(db_url, True)
        with_index = time_status(rs, db_url, args.status_calls)
        plan_with = explain(db_url)
        health = time_health_counts(db_url, rollout_started)

        # The same fleet's checks from the schedule alone, no server: this tree's first
        # delay, and the uniform one in [0, interval) it replaced (decision 081).
        alone = peak_to_mean(schedule_only_buckets(config))
        uniform = peak_to_mean(schedule_only_buckets(config, lambda t, u: t.interval * u))
        mean_rate = len(result.polls) / wall
        print()
        print(f"{'':46}{'measured':>14}{'target / baseline':>30}")
        print(
            f"{'checks: peak / mean per real-equiv. minute':46}{ratio:>14.3f}"
            f"{'<= ' + str(RATIO_TARGET):>30}"
        )
        print(
            f"{'  the schedule alone, no server':46}{alone:>14.3f}"
            f"{f'uniform first delay {uniform:.3f}':>30}"
        )
        print(
            f"{'  buckets (min, mean, max checks)':46}"
            f"{f'{min(buckets)}/{statistics.mean(buckets):.0f}/{max(buckets)}':>14}"
            f"{f'{len(buckets)} buckets of {config.bucket:.0f} s':>30}"
        )
        print(
            f"{'  check rate (compressed; real equivalent)':46}{mean_rate:>12,.0f}/s"
            f"{f'{mean_rate / args.compress:,.0f}/s real':>30}"
        )
        print(
            f"{'p99 GET / at the replica (nginx log, ms)':46}{percentile(get_up, 99) * 1000:>14.1f}"
            f"{f'keepers saw {percentile(get_client, 99) * 1000:.1f} ms':>30}"
        )
        print(
            f"{'p99 POST /v1/reports at the replica (ms)':46}"
            f"{percentile(post_up, 99) * 1000:>14.1f}"
            f"{f'keepers saw {percentile(post_client, 99) * 1000:.1f} ms':>30}"
        )
        print(
            f"{'  load generator lag p99 (ms)':46}{percentile(result.loop_lag, 99) * 1000:>14.1f}"
            f"{'(in what keepers saw)':>30}"
        )
        print(
            f"{'  load generator CPU (ms per request)':46}"
            f"{result.cpu / (len(result.polls) + len(result.reports)) * 1000:>14.2f}"
            f"{f'{result.cpu / wall:.2f} cores':>30}"
        )
        print(
            f"{'replicas CPU-s / 1,000 nodes / real hour':46}{cpu[0]:>14.2f}"
            f"{f'nginx {cpu[1]:.2f}, PostgreSQL ' + (f'{cpu[2]:.2f}' if pg else 'n/a'):>30}"
        )
        print(
            f"{'replicas agreeing (ETag + body hash)':46}{f'{agree}/{len(sampler.samples)}':>14}"
            f"{f'{len(etags)} distinct ETags over the run':>30}"
        )
        print(
            f"{f'GET /v1/admin/status over {rows:,} reports':46}"
            f"{with_index['api_median']:>11.0f} ms"
            f"{'without index ' + ms(without['api_median']):>30}"
            f"   target <= {STATUS_TARGET_MS:.0f} ms"
        )
        print(
            f"{'  worst of ' + str(args.status_calls):46}{with_index['api_max']:>11.0f} ms"
            f"{'without index ' + ms(without['api_max']):>30}"
        )
        print(
            f"{'  store call (version_summary), median':46}{with_index['store_median']:>11.0f} ms"
            f"{'without index ' + ms(without['store_median']):>30}"
        )
        if health is None:
            print(f"{'  auto-pause judgement counts':46}{'n/a':>14}{'(not in this tree)':>30}")
        else:
            print(
                f"{'  auto-pause counts, candidate 1.1.0':46}{health['1.1.0']:>11.0f} ms"
                f"{'fleet 1.0.0 ' + ms(health['1.0.0']):>30}"
            )
        print()
        print(
            f"checks {len(result.polls):,} ({failed_polls} failed), keepers that checked "
            f"{result.polled:,}/{args.nodes:,}; reports sent {len(result.reports):,}, delivered "
            f"{dict(result.report_kinds)}, undelivered {result.undelivered}, rejected "
            f"{result.rejected}; requests per replica {sorted(by_replica.values())}; "
            f"most requests open at once {result.most_in_flight:,}"
        )
        print(
            f"versions: keepers {dict(result.versions())}, server's node_versions "
            f"{stored['versions']}; index build {build_s:.1f} s; fleet wall {wall:.0f} s"
        )
        print(
            f"machine: {os.cpu_count()} cores, load average {load_before:.1f} at the restart, "
            f"{load_after:.1f} at the end (the bench's own processes included)"
        )
        print("\nEXPLAIN ANALYZE without ix_reports_failures:")
        print("\n".join(plan_without))
        print("EXPLAIN ANALYZE with it:")
        print("\n".join(plan_with))
    finally:
        rs.stop()
        with contextlib.suppress(Exception):
            drop_database(db_url)
        if pg:
            pg.stop()


if __name__ == "__main__":
    main()
