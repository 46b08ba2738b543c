"""`POST /v1/reachability` on a real control plane on loopback (decision 082): real TCP
listeners, the reference node's own QUIC responder (storagenode.quic), a UDP port that
never answers and one that answers garbage, and every refusal with its status and words.

Loopback stands in for the Internet: the control plane dials 127.0.0.x, and a second
source address (127.0.0.2, a client socket bound to it) is "someone else".
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nodekeeper.server.reachability_rules import TCP_DEADLINE, UDP_DEADLINE
from nodekeeper.version.reports import sign_report
from storagenode.quic import QuicProbeResponder

from .controlplane import ControlPlane
from .test_reports import Node

PATH = "/v1/reachability"
# The dials run side by side; the answer comes within the longer deadline and a margin
# for a loaded machine (the full suite runs six workers and Wine on two cores).
ANSWER_WITHIN = max(TCP_DEADLINE, UDP_DEADLINE) + 5.0


def ask(
    server: ControlPlane,
    node: Node,
    address: str,
    *,
    source: str = "127.0.0.1",
    body: bytes | None = None,
    key=None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    if body is None:
        body = json.dumps({"node_id": node.node_id, "address": address}).encode()
    sent = {**sign_report(body, key or node.key), **(headers or {})}
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as client:
        return client.post(server.url + PATH, content=body, headers=sent)


class Target:
    """A node's public port on loopback: TCP listening (accepting nothing, the kernel
    completes the handshake) and, when asked, the reference node's QUIC responder."""

    def __init__(self, host: str = "127.0.0.1", quic: bool = True) -> None:
        for _ in range(50):
            self.tcp = socket.socket()
            self.tcp.bind((host, 0))
            self.port = self.tcp.getsockname()[1]
            try:
                self.quic = QuicProbeResponder(host, self.port).start() if quic else None
                break
            except OSError:  # the UDP port of that number is taken: another one
                self.tcp.close()
        else:
            raise AssertionError("no port free for both TCP and UDP")
        self.tcp.listen(16)
        self.host = host

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        self.tcp.close()
        if self.quic is not None:
            self.quic.close()


@pytest.fixture
def target() -> Iterator[Target]:
    t = Target()
    yield t
    t.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ControlPlane]:
    root = tmp_path_factory.mktemp("reach")
    with ControlPlane(root / "cp", extra_args=["--reachability-per-source", "1000"]) as cp:
        yield cp


def rows(server: ControlPlane) -> dict[str, dict]:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{server.data_dir / 'control-plane.db'}")
    try:
        with engine.connect() as conn:
            found = conn.execute(sa.text("SELECT * FROM reachability")).mappings().all()
            return {r["node_id"]: dict(r) for r in found}
    finally:
        engine.dispose()


# -- what a check finds ------------------------------------------------------------------


def test_a_reachable_node_answers_tcp_and_the_quic_probe(server, target):
    node = Node()
    started = time.monotonic()
    answer = ask(server, node, target.address)
    assert answer.status_code == 200, answer.text
    assert time.monotonic() - started < ANSWER_WITHIN
    result = answer.json()
    assert result["tcp"] == "reachable" and result["udp"] == "reachable", result
    assert result["address"] == target.address
    assert abs(result["checked_at"] - time.time()) < 30
    assert "Version Negotiation (offering 0x6a7a8a9a)" in result["detail"]
    assert target.quic.answered >= 1
    # The check time and result are in the database, for every replica.
    row = next(r for r in rows(server).values() if r["address"] == target.address)
    assert row["source"] == "127.0.0.1" and json.loads(row["result"]) == result


def test_a_name_that_resolves_to_the_requester_is_dialled_at_the_requesters_address(server, target):
    answer = ask(server, Node(), f"localhost:{target.port}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["address"] == target.address  # the source, not the name's answer


def test_nothing_listening_is_unreachable_on_both(server):
    with socket.socket() as probe:  # a port nobody listens on, TCP or UDP
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = ask(server, Node(), f"127.0.0.1:{port}").json()
    assert result["tcp"] == "unreachable" and result["udp"] == "unreachable", result
    assert "was refused" in result["detail"] and f"Forward TCP port {port}" in result["detail"]


def test_a_blackholed_node_is_unreachable_and_no_answer_within_the_deadlines(server):
    """TCP: a listener whose accept queue is full drops SYNs; UDP: a bound socket that
    reads nothing answers nothing (and sends no ICMP)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    quiet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    quiet.bind(("127.0.0.1", port))
    fillers = []
    for _ in range(3):  # fill the accept queue (backlog 0 holds one)
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        started = time.monotonic()
        result = ask(server, Node(), f"127.0.0.1:{port}").json()
        took = time.monotonic() - started
    finally:
        for s in (listener, quiet, *fillers):
            s.close()
    assert result["tcp"] == "unreachable" and result["udp"] == "no_answer", result
    assert f"got no answer within {TCP_DEADLINE:g} s" in result["detail"]
    assert f"no answer to the QUIC probe within {UDP_DEADLINE:g} s" in result["detail"]
    assert max(TCP_DEADLINE, UDP_DEADLINE) - 0.5 < took < ANSWER_WITHIN


class Garbage:
    """A UDP port that answers every datagram with garbage: random bytes, a Version
    Negotiation for other connection IDs, one echoing our IDs but offering our own
    version, a 60 KB datagram, and a burst of 100."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, sender = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            dcid, scid = data[6:14], data[15:23]
            version = data[1:5]
            answers = [
                os.urandom(40),
                b"\x80\x00\x00\x00\x00\x08" + b"x" * 8 + b"\x08" + b"y" * 8 + b"\x00\x00\x00\x01",
                b"\x80\x00\x00\x00\x00\x08" + scid + b"\x08" + dcid + version,
                b"\x80" + b"\xff" * 60_000,
                *[os.urandom(100) for _ in range(100)],
            ]
            for answer in answers:
                self.sock.sendto(answer, sender)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_garbage_udp_answers_are_no_answer_and_say_what_came(server):
    target = Target(quic=False)
    garbage = Garbage(target.port)
    try:
        started = time.monotonic()
        answer = ask(server, Node(), target.address)
        took = time.monotonic() - started
    finally:
        garbage.close()
        target.close()
    result = answer.json()
    assert result["tcp"] == "reachable" and result["udp"] == "no_answer", result
    assert "datagram(s) came back that were not one" in result["detail"]
    assert took < ANSWER_WITHIN
    assert httpx.get(server.url + "/healthz").status_code == 200


# -- refusals ------------------------------------------------------------------------------


def test_a_declared_host_that_is_not_the_requester_is_refused_and_not_dialled(server, target):
    node = Node()
    # 127.0.0.2 asks for 127.0.0.1 (by literal and by a name resolving to it).
    for address in (target.address, f"localhost:{target.port}"):
        answer = ask(server, node, address, source="127.0.0.2")
        assert answer.status_code == 403, answer.text
        assert "not the address this request came from (127.0.0.2)" in answer.json()["error"]
    assert target.quic.answered == 0
    assert not any(r["source"] == "127.0.0.2" for r in rows(server).values())


def test_only_the_declared_port_is_dialled(server, target):
    """A body naming another port is refused whole; the check of the declared port
    touches no other port."""
    other = Target()
    try:
        node = Node()
        body = json.dumps(
            {"node_id": node.node_id, "address": target.address, "port": other.port}
        ).encode()
        refused = ask(server, node, "", body=body)
        assert refused.status_code == 400
        assert "Extra inputs are not permitted" in refused.json()["error"]
        assert ask(server, node, target.address).status_code == 200
        other.tcp.setblocking(False)
        with pytest.raises(BlockingIOError):
            other.tcp.accept()  # nobody connected to the other port
        assert other.quic.answered == 0
    finally:
        other.close()


def test_a_node_checked_lately_gets_429_with_retry_after_on_any_replica(tmp_path, target):
    """Two replicas over one database: the second refuses a node the first just checked."""
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    with ControlPlane(tmp_path / "a", db) as a, ControlPlane(tmp_path / "b", db) as b:
        node = Node()
        assert ask(a, node, target.address).status_code == 200
        again = ask(b, node, target.address)
        assert again.status_code == 429
        assert 590 <= int(again.headers["Retry-After"]) <= 600
        assert "checked less than 10 minutes ago" in again.json()["error"]
        assert target.quic.answered == 1  # the refused check dialled nothing


def test_one_address_may_have_only_so_many_nodes_checked(tmp_path, target):
    with ControlPlane(tmp_path / "cp", extra_args=["--reachability-per-source", "2"]) as cp:
        assert ask(cp, Node(), target.address).status_code == 200
        assert ask(cp, Node(), target.address).status_code == 200
        third = ask(cp, Node(), target.address)
        assert third.status_code == 429, third.text
        assert (
            "2 nodes from this address were checked in the last 60 minutes"
            in (third.json()["error"])
        )
        assert int(third.headers["Retry-After"]) > 3500
        # Another address has its own share.
        elsewhere = Target("127.0.0.2")
        try:
            assert ask(cp, Node(), elsewhere.address, source="127.0.0.2").status_code == 200
        finally:
            elsewhere.close()


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path, server, target):
    # Untrusted: the header is ignored, the peer (127.0.0.1) is dialled.
    spoofed = ask(server, Node(), target.address, headers={"X-Forwarded-For": "127.0.0.3"})
    assert spoofed.status_code == 200 and spoofed.json()["address"] == target.address
    # Trusted: the proxy on 127.0.0.1 says the client is 127.0.0.2, which is dialled.
    client = Target("127.0.0.2")
    try:
        extra = ["--trusted-proxy", "127.0.0.1"]
        with ControlPlane(tmp_path / "proxied", extra_args=extra) as cp:
            node = Node()
            via_proxy = {"X-Forwarded-For": "127.0.0.2"}
            refused = ask(cp, node, target.address, headers=via_proxy)
            assert refused.status_code == 403  # 127.0.0.1 is the proxy, not the client
            answer = ask(cp, node, client.address, headers=via_proxy)
            assert answer.status_code == 200, answer.text
            assert answer.json()["address"] == client.address
            assert answer.json()["udp"] == "reachable" and client.quic.answered == 1
    finally:
        client.close()


def test_a_bad_trusted_proxy_is_refused_at_start(tmp_path):
    from tests.support import run_main

    result = run_main(["server", "run", "--trusted-proxy", "proxy.lan", "--data-dir",
                       str(tmp_path)])  # fmt: skip
    assert result.returncode == 2
    assert "--trusted-proxy 'proxy.lan' is not an IP address or network" in result.stderr


def test_unsigned_forged_and_foreign_signatures_are_401(server, target):
    node, other = Node(), Node()
    body = json.dumps({"node_id": node.node_id, "address": target.address}).encode()
    unsigned = httpx.post(server.url + PATH, content=body)
    assert unsigned.status_code == 401 and "must be signed" in unsigned.json()["error"]
    forged = {**sign_report(b"something else", node.key)}
    answer = httpx.post(server.url + PATH, content=body, headers=forged)
    assert answer.status_code == 401 and "does not verify" in answer.json()["error"]
    foreign = ask(server, node, target.address, key=other.key)
    assert foreign.status_code == 401 and "another node's key" in foreign.json()["error"]
    assert target.quic.answered == 0


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"not json", "not a reachability request"),
        (b"[]", "not a reachability request"),
        (b"[" * 3000 + b"]" * 3000, "at most 4096 bytes"),
        (b"[" * 2000 + b"]" * 2000, "not a reachability request"),
        (b'{"node_id": "x", "address": "127.0.0.1:1"}', "node_id"),
        (None, "address"),  # the node's own ID, no address
        (b'{"node_id": 1e999999, "address": {}}', "not a reachability request"),
        (b"\xff\xfe" * 100, "not a reachability request"),
        (b"x" * 100_000, "at most 4096 bytes"),
    ],
    ids=["not-json", "array", "deep-too-big", "deep", "bad-node-id", "no-address",
         "huge-number", "not-utf8", "100-kb"],
)  # fmt: skip
def test_a_hostile_body_is_400_and_the_server_goes_on(server, body, words):
    node = Node()
    if body is None:
        body = json.dumps({"node_id": node.node_id}).encode()
    answer = ask(server, node, "", body=body)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_declared_addresses_that_are_not_host_port_are_400(server):
    node = Node()
    for address in ("127.0.0.1", "127.0.0.1:0", "http://127.0.0.1:1/", "no such host.example:1"):
        answer = ask(server, node, address)
        assert answer.status_code == 400, (address, answer.text)
        assert "HOST:PORT" in answer.json()["error"]
    unknown = ask(server, node, "no-such-host.invalid:28967")
    assert unknown.status_code == 400 and "does not resolve" in unknown.json()["error"]


def test_the_node_id_must_be_the_signers(server, tmp_path: Path):
    assert tmp_path  # (the module server is shared; this checks the words once more)
    node = Node()
    body = json.dumps({"node_id": Node().node_id, "address": "127.0.0.1:1"}).encode()
    answer = ask(server, node, "", body=body)
    assert answer.status_code == 401 and "another node's key" in answer.json()["error"]
