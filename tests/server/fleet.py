"""The fleet simulator: many keepers as asyncio tasks against a real control plane.

Used by bench/fleet.py (100,000 keepers) and tests/server/test_fleet.py (a few hundred).
What each simulated keeper does is the keeper's own code wherever the keeper decides
something; only the I/O around it is simulated:

- when to check: ``updater.cycle.first_check_delay`` (the fleet is "installed", so a
  mass restart spreads over about one interval, decision 081) and ``updater.schedule.
  next_delay`` (interval ± jitter, exponential backoff after failures, the server's
  Retry-After as a floor, parsed by ``backoff.parse_retry_after``);
- the check: a conditional GET / with the last ETag, as the keeper sends it; the
  announcement parsed by the keeper's parser (once per distinct body: every keeper that
  gets the same bytes would parse them to the same thing) and decided on by ``version.decision.
  decide_update``, which asks ``version.rollout.is_rollout_candidate``;
- an update is not carried out: a keeper told to update runs the target from then on and
  reports ``update_succeeded`` (downloads are nginx's or a CDN's load, not the control
  plane's, and the bench is about the control plane);
- reports: built by the reporter's ``make_record`` / ``build_report``, encoded and
  signed by ``version.reports.encode_report`` / ``sign_report`` with the node's ed25519
  key, heartbeats when ``updater.cycle.heartbeat_due`` says so, answers classified and
  retried by the reporter's ``classify_status`` / ``retry_delay``, one at a time per node.

Node identities are real ed25519 keys derived from a seed (``sha256("nk-fleet-SEED-i")``
as the private key), their node IDs derived from the public key as the reference node
does: cheap to make (no certificate chain, no proof of work) and the same fleet every run.

Time compression: every delay a keeper waits (check interval, backoff, Retry-After, the
report sender's backoff, the heartbeat period) is divided by ``compress``, so the fleet
does ``compress`` times the real request rate for 1/``compress`` of the time. The
figures say so and are converted back (a bucket of 60/compress seconds is one
real-equivalent minute).

HTTP is a minimal HTTP/1.1 client over asyncio streams, one connection per request as a
keeper's check does after 15 minutes idle: httpx costs ~10x the CPU per request, and on
two cores the load generator must stay light beside the servers it measures.
"""

from __future__ import annotations

import array
import asyncio
import hashlib
import math
import os
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodekeeper.backoff import parse_retry_after
from nodekeeper.keeper.reports.policy import RetryTiming, Verdict, classify_status, retry_delay
from nodekeeper.keeper.reports.record import build_report, make_record
from nodekeeper.updater.cycle import (
    CycleSettings,
    first_check_delay,
    heartbeat_due,
)
from nodekeeper.updater.netabort import DEFAULT_REQUEST_DEADLINE
from nodekeeper.updater.schedule import CheckTiming, next_delay
from nodekeeper.version.decision import decide_update
from nodekeeper.version.nodeid import node_id_from_public_key
from nodekeeper.version.reports import encode_report, new_report_id, sign_report
from nodekeeper.version.schema import parse_announcement

PROCESS = "storagenode"


# -- identities ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    key: Ed25519PrivateKey
    node_id: bytes  # 32 bytes, what the rollout hash is computed over
    hex: str  # what reports carry (the server also takes Storj's base58 form)


def make_identities(count: int, seed: int = 1) -> list[Identity]:
    out = []
    for i in range(count):
        key = Ed25519PrivateKey.from_private_bytes(
            hashlib.sha256(f"nk-fleet-{seed}-{i}".encode()).digest()
        )
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        node_id = node_id_from_public_key(raw)
        out.append(Identity(key, node_id, node_id.hex()))
    return out


# -- a small HTTP/1.1 client ---------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int  # 0: no HTTP answer (refused, reset, timed out)
    headers: dict[str, str]
    body: bytes


class IN_FLIGHT:  # a namespace: requests open now, and the most at once
    now = 0
    most = 0


async def http_request(
    host: str,
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes = b"",
    deadline: float = DEFAULT_REQUEST_DEADLINE,
) -> Reply:
    """One request on its own connection; any failure is ``Reply(0, ...)``."""
    writer = None
    IN_FLIGHT.now += 1
    IN_FLIGHT.most = max(IN_FLIGHT.most, IN_FLIGHT.now)
    try:
        async with asyncio.timeout(deadline):
            reader, writer = await asyncio.open_connection(host, port)
            lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            if body or method == "POST":
                lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            got = {}
            for line in header_lines:
                name, sep, value = line.partition(":")
                if sep:
                    got[name.strip().lower()] = value.strip()
            length = int(got.get("content-length", "0"))
            data = await reader.readexactly(length) if length else b""
            return Reply(int(status_line.split(" ", 2)[1]), got, data)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
        return Reply(0, {}, str(exc).encode())
    finally:
        IN_FLIGHT.now -= 1
        if writer is not None:
            writer.close()


# -- the simulation ------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetConfig:
    url: str  # where keepers check and report (nginx or one replica)
    nodes: int
    compress: float = 1.0  # every delay a keeper waits is divided by this
    intervals: float = 2.0  # how long to run, in (real) check intervals from the restart
    start_version: str = "1.0.0"
    timing: CheckTiming = field(default_factory=CheckTiming)  # the keeper's defaults
    report_timing: RetryTiming = field(default_factory=RetryTiming)
    seed: int = 1
    drain_seconds: float = 30.0  # after the end: let queued reports go out this long

    def scaled_timing(self) -> CheckTiming:
        t, c = self.timing, self.compress
        return CheckTiming(
            interval=t.interval / c,
            jitter=t.jitter,
            backoff_initial=t.backoff_initial / c,
            backoff_max=t.backoff_max / c,
            retry_after_max=t.retry_after_max / c,
        )

    def scaled_report_timing(self) -> RetryTiming:
        t, c = self.report_timing, self.compress
        # retry_after_scale applies to what the server asked (the server's "60" is real
        # seconds); the floor and the backoff are the keeper's own, scaled alike.
        return RetryTiming(
            initial=t.initial / c,
            maximum=t.maximum / c,
            jitter=t.jitter,
            retry_after_max=t.retry_after_max,
            retry_after_scale=1 / c,
        )

    @property
    def duration(self) -> float:
        """Seconds of wall time the keepers check for."""
        return self.timing.interval * self.intervals / self.compress

    @property
    def bucket(self) -> float:
        """Wall seconds of one real-equivalent minute."""
        return 60.0 / self.compress


class Samples:
    """(start, seconds, status) of requests, in arrays: 100,000 keepers make millions."""

    def __init__(self) -> None:
        self.start = array.array("d")
        self.seconds = array.array("d")
        self.status = array.array("i")

    def add(self, start: float, seconds: float, status: int) -> None:
        self.start.append(start)
        self.seconds.append(seconds)
        self.status.append(status)

    def __len__(self) -> int:
        return len(self.start)


@dataclass
class Keeper:
    identity: Identity
    version: str
    etag: str | None = None
    entry: Any = None  # the ProcessAnnouncement of the last announcement seen
    failures: int = 0
    checks: int = 0
    heartbeat_sent: tuple[str, float] | None = None
    outbox: deque = field(default_factory=deque)
    sending: bool = False


@dataclass
class FleetResult:
    config: FleetConfig
    polls: Samples
    reports: Samples
    report_kinds: Counter
    keepers: list[Keeper]
    undelivered: int  # reports still queued when the drain ended
    rejected: int  # reports the server refused for good (401/413/422): must be 0
    loop_lag: list[float]  # the load generator's own scheduling lag, sampled
    started_at: float  # unix time of the mass restart
    cpu: float  # CPU seconds the load generator (this process) spent
    most_in_flight: int  # the most requests open at once

    @property
    def polled(self) -> int:
        return sum(1 for k in self.keepers if k.checks > 0)

    def versions(self) -> Counter:
        return Counter(k.version for k in self.keepers)

    def poll_buckets(self) -> list[int]:
        return bucket_counts(self.polls.start, self.config.duration, self.config.bucket)


def bucket_counts(starts: Any, duration: float, bucket: float) -> list[int]:
    """Requests per whole bucket in [0, duration); a last partial bucket is left out."""
    n = int(duration / bucket + 1e-9)  # 6.0 // 0.2 is 29.0 in floating point
    counts = [0] * n
    for t in starts:
        i = int(t // bucket)
        if 0 <= i < n:
            counts[i] += 1
    return counts


def peak_to_mean(counts: list[int]) -> float:
    if not counts or sum(counts) == 0:
        return math.nan
    return max(counts) / (sum(counts) / len(counts))


def schedule_only_buckets(config: FleetConfig, first: Any = None, seed: int = 1) -> list[int]:
    """The checks per bucket the keeper's schedule alone gives ``config``'s fleet: every
    check answered at once, no server, no load generator. ``first(timing, u)`` replaces
    the first delay (the bench's baseline: the uniform one before decision 081)."""
    timing = config.scaled_timing()
    rand = random.Random(seed).random
    settings = CycleSettings(server=config.url, timing=timing)
    starts = array.array("d")
    for _ in range(config.nodes):
        u = rand()
        t = first(timing, u) if first else first_check_delay(settings, True, u)
        while t < config.duration:
            starts.append(t)
            t += next_delay(timing, 0, rand())
    return bucket_counts(starts, config.duration, config.bucket)


def percentile(values: Any, q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Fleet:
    def __init__(self, config: FleetConfig, identities: list[Identity] | None = None) -> None:
        self.config = config
        split = urlsplit(config.url)
        self.host, self.port = split.hostname or "127.0.0.1", split.port or 80
        ids = identities or make_identities(config.nodes, config.seed)
        self.keepers = [Keeper(i, config.start_version) for i in ids[: config.nodes]]
        self.timing = config.scaled_timing()
        self.report_timing = config.scaled_report_timing()
        self.settings = CycleSettings(server=config.url, timing=self.timing)
        self.rand = random.Random(config.seed)
        self.polls = Samples()
        self.reports = Samples()
        self.kinds: Counter = Counter()
        self.rejected = 0
        self.parsed: dict[bytes, Any] = {}  # body -> its ProcessAnnouncement
        self.lag: list[float] = []
        self._senders: set[asyncio.Task] = set()

    # keeper-time: real-equivalent seconds since the restart (what heartbeat_due compares)
    def _keeper_now(self) -> float:
        return (asyncio.get_running_loop().time() - self.t0) * self.config.compress

    async def run(self) -> FleetResult:
        loop = asyncio.get_running_loop()
        self.t0 = loop.time()
        self.end = self.t0 + self.config.duration
        started = time.time()
        cpu = time.process_time()
        IN_FLIGHT.now = IN_FLIGHT.most = 0
        lag_probe = asyncio.create_task(self._probe_lag())
        await asyncio.gather(*(self._keeper(k) for k in self.keepers))
        drain_until = loop.time() + self.config.drain_seconds
        while any(k.outbox for k in self.keepers) and loop.time() < drain_until:
            await asyncio.sleep(0.1)
        for task in list(self._senders):
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        lag_probe.cancel()
        return FleetResult(
            config=self.config,
            polls=self.polls,
            reports=self.reports,
            report_kinds=self.kinds,
            keepers=self.keepers,
            undelivered=sum(len(k.outbox) for k in self.keepers),
            rejected=self.rejected,
            loop_lag=self.lag,
            started_at=started,
            cpu=time.process_time() - cpu,
            most_in_flight=IN_FLIGHT.most,
        )

    async def _probe_lag(self) -> None:
        """How late a 10 ms sleep wakes: what the load generator adds to its latencies."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            self.lag.append(loop.time() - before - 0.01)

    async def _keeper(self, k: Keeper) -> None:
        loop = asyncio.get_running_loop()
        # A mass restart: every keeper started at t0 (its task may start a little later,
        # 100,000 of them take a moment to create).
        when = self.t0 + first_check_delay(self.settings, True, self.rand.random())
        while when < self.end:
            await asyncio.sleep(when - loop.time())
            retry_after = await self._check(k)
            delay = next_delay(self.timing, k.failures, self.rand.random(), retry_after)
            when = loop.time() + delay

    async def _check(self, k: Keeper) -> float | None:
        loop = asyncio.get_running_loop()
        headers = {}  # the server sends the document as it is (no content coding)
        if k.etag:
            headers["If-None-Match"] = k.etag
        start = loop.time()
        reply = await http_request(self.host, self.port, "GET", "/", headers)
        self.polls.add(start - self.t0, loop.time() - start, reply.status)
        retry_after = None
        if reply.status == 200 or (reply.status == 304 and k.entry is not None):
            k.failures = 0
            k.checks += 1
            if reply.status == 200:
                entry = self.parsed.get(reply.body)
                if entry is None:
                    entry = parse_announcement(reply.body).processes[PROCESS]
                    self.parsed[reply.body] = entry
                k.entry, k.etag = entry, reply.headers.get("etag")
            decision = decide_update(k.version, k.entry, k.identity.node_id)
            if decision.target and decision.target != k.version:
                before, k.version = k.version, decision.target
                self._queue(
                    k,
                    "update_succeeded",
                    f"updated {PROCESS} {before} -> {k.version}",
                    target_version=k.version,
                )
        else:
            k.failures += 1
            asked = parse_retry_after(reply.headers.get("retry-after"), time.time())
            # The server speaks real seconds; the simulated keeper lives compressed.
            retry_after = None if asked is None else asked / self.config.compress
        now = self._keeper_now()
        if heartbeat_due(k.heartbeat_sent, k.version, now):
            k.heartbeat_sent = (k.version, now)
            self._queue(k, "heartbeat", f"{PROCESS} runs {k.version}")
        return retry_after

    def _queue(self, k: Keeper, kind: str, message: str, **fields: Any) -> None:
        record = make_record(
            kind,  # type: ignore[arg-type]
            message,
            process=PROCESS,
            version=k.version,
            target_version=fields.get("target_version"),
            at=time.time(),
            report_id=new_report_id(),
            node_id=k.identity.hex,
            details={},
        )
        k.outbox.append(record)
        if not k.sending:
            k.sending = True
            task = asyncio.create_task(self._send(k))
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)

    async def _send(self, k: Keeper) -> None:
        """The reporter's loop for one node: oldest first, one at a time."""
        loop = asyncio.get_running_loop()
        failures = 0
        try:
            while k.outbox:
                report = build_report(k.outbox[0], k.identity.hex, 0)
                body = encode_report(report)
                headers = {"Content-Type": "application/json", **sign_report(body, k.identity.key)}
                start = loop.time()
                reply = await http_request(
                    self.host, self.port, "POST", "/v1/reports", headers, body
                )
                self.reports.add(start - self.t0, loop.time() - start, reply.status)
                verdict = classify_status(reply.status) if reply.status else Verdict.RETRY
                if verdict is Verdict.RETRY:
                    failures += 1
                    asked = parse_retry_after(reply.headers.get("retry-after"), time.time())
                    await asyncio.sleep(
                        retry_delay(failures, asked, self.report_timing, self.rand.random())
                    )
                    continue
                failures = 0
                k.outbox.popleft()
                if verdict is Verdict.REJECTED:
                    self.rejected += 1
                else:
                    self.kinds[report.kind] += 1
        finally:
            k.sending = False


def run_fleet(config: FleetConfig, identities: list[Identity] | None = None) -> FleetResult:
    """Runs the fleet in a fresh event loop (in the calling thread)."""
    _raise_open_files()
    return asyncio.run(Fleet(config, identities).run())


def _raise_open_files() -> None:
    """Each request in flight holds a socket: when the servers fall behind, tens of
    thousands can be (each keeper waits up to its deadline). As root the hard limit can
    go up too; otherwise the soft one goes up to it."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in (max(hard, 250_000), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            return
        except (ValueError, OSError):
            continue


# -- the control plane's side -------------------------------------------------------------


def publish_and_start(
    url: str,
    token: str,
    work: Path,
    *,
    rate_per_day: float | None = None,
    percent: float | None = None,
) -> None:
    """1.0.0 (the minimum, what the fleet runs) and 1.1.0 published for two platforms,
    and a rollout of 1.1.0: ramping at ``rate_per_day`` or set to ``percent`` by hand."""
    from nodekeeper.server.client import AdminClient
    from tests.server.releases import release_zip

    client = AdminClient(url, token)
    try:
        for version in ("1.0.0", "1.1.0"):
            files = {}
            for platform in ("linux_amd64", "windows_amd64"):
                path = work / f"sn_{version}_{platform}.zip"
                release_zip(path, version, padding=1024)
                files[platform] = str(path)
            client.publish(PROCESS, version, files)
        client.request("PUT", f"/v1/admin/processes/{PROCESS}/minimum", json={"version": "1.0.0"})
        client.request(
            "POST",
            f"/v1/admin/processes/{PROCESS}/rollout",
            json={"version": "1.1.0", "rate_per_day": rate_per_day},
        )
        if percent is not None:
            client.request(
                "PUT", f"/v1/admin/processes/{PROCESS}/rollout/percent", json={"percent": percent}
            )
    finally:
        client.close()


# -- the servers' CPU, from /proc ----------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """user + system time of these processes (all their threads), from /proc/PID/stat."""
    total = 0.0
    for pid in pids:
        try:
            stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - one read
        except OSError:
            continue  # ended (a PostgreSQL backend that closed)
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return total


KINDS_SQL = "SELECT kind, count(*) FROM reports GROUP BY kind"
VERSIONS_SQL = "SELECT version, count(*) FROM node_versions GROUP BY version"


def stored_counts(db_url: str) -> dict[str, Any]:
    """What the control plane stored: reports by kind, node_versions per version."""
    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            kinds = {k: n for k, n in conn.execute(sa.text(KINDS_SQL))}
            versions = {v: n for v, n in conn.execute(sa.text(VERSIONS_SQL))}
    finally:
        engine.dispose()
    return {"kinds": kinds, "versions": versions}
