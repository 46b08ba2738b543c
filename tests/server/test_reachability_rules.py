"""The dial-back's decisions, apart from any socket (decision 082): whose address counts,
which declared addresses are refused, the rate limits, and the words of the answer."""

from __future__ import annotations

import ipaddress

import pytest

from nodekeeper.server.reachability_rules import (
    Limits,
    ProbeResult,
    Refusal,
    check_declared,
    client_address,
    node_wait,
    outcome,
    parse_declared,
    parse_trusted,
    source_wait,
)

ip = ipaddress.ip_address
PROXY = parse_trusted(["10.0.0.1", "192.168.0.0/16"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.7", None, (), "203.0.113.7"),
        # A client's own X-Forwarded-For proves nothing without a trusted proxy.
        ("203.0.113.7", "198.51.100.1", (), "203.0.113.7"),
        ("203.0.113.7", "198.51.100.1", PROXY, "203.0.113.7"),  # peer not a proxy
        ("10.0.0.1", "198.51.100.1", PROXY, "198.51.100.1"),
        # The client wrote the left entries; the proxy appended the right-most one.
        ("10.0.0.1", "1.2.3.4, 198.51.100.1", PROXY, "198.51.100.1"),
        # Two trusted proxies in a row are walked past.
        ("10.0.0.1", "1.2.3.4, 198.51.100.1, 192.168.3.3", PROXY, "198.51.100.1"),
        ("10.0.0.1", None, PROXY, "10.0.0.1"),
        ("::ffff:203.0.113.7", None, (), "203.0.113.7"),  # IPv4-mapped as IPv4
        ("2001:db8::7", None, (), "2001:db8::7"),
    ],
)
def test_client_address(peer, forwarded, trusted, expected):
    assert client_address(peer, forwarded, trusted) == ip(expected)


def test_a_trusted_proxys_garbage_header_and_no_peer_are_refused():
    with pytest.raises(Refusal, match="not an IP address; check the proxy"):
        client_address("10.0.0.1", "1.2.3.4, evil", PROXY)
    with pytest.raises(Refusal, match="cannot tell the address"):
        client_address(None, None, ())


def test_trusted_proxy_values_are_checked():
    with pytest.raises(ValueError, match=r"--trusted-proxy 'proxy\.example' is not an IP"):
        parse_trusted(["proxy.example"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7:28967", ("203.0.113.7", 28967)),
        ("node.example.net:1", ("node.example.net", 1)),
        ("[2001:db8::7]:28967", ("2001:db8::7", 28967)),
    ],
)
def test_declared_addresses(text, expected):
    assert parse_declared(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "203.0.113.7", "203.0.113.7:0", "203.0.113.7:65536", "h:-1", ":28967", "2001:db8::7:1",
     "[2001:db8::7]", "a/b:1", "a b:1", "x" * 400 + ":1", 28967, None, ["h:1"]],
)  # fmt: skip
def test_bad_declared_addresses_are_400_with_the_form(text):
    with pytest.raises(Refusal) as refused:
        parse_declared(text)
    assert refused.value.status == 400 and "HOST:PORT" in refused.value.message


def test_only_the_requesters_own_address_is_dialled():
    check_declared("203.0.113.7", ["203.0.113.7"], ip("203.0.113.7"))
    check_declared("node.example", ["198.51.100.1", "203.0.113.7"], ip("203.0.113.7"))
    with pytest.raises(Refusal) as refused:
        check_declared("node.example", ["198.51.100.1"], ip("203.0.113.7"))
    message = refused.value.message
    assert refused.value.status == 403
    assert (
        "node.example resolves to 198.51.100.1, which is not the address this request "
        "came from (203.0.113.7)" in message
    )
    assert "--trusted-proxy" in message
    with pytest.raises(Refusal, match=r"^198.51.100.1 is not the address"):
        check_declared("198.51.100.1", ["198.51.100.1"], ip("203.0.113.7"))


def test_the_node_limit():
    limits = Limits(node_interval=600)
    assert node_wait(None, 1000.0, limits) is None
    assert node_wait(1000.0, 1000.0, limits) == 600
    assert node_wait(1000.0, 1599.0, limits) == 1
    assert node_wait(1000.0, 1600.0, limits) is None


def test_the_source_limit_waits_for_the_oldest_checks_to_leave_the_window():
    limits = Limits(per_source=3, source_window=3600)
    now = 10_000.0
    assert source_wait([now - 10, now - 20], now, limits) is None
    assert source_wait([now - 10, now - 20, now - 3700], now, limits) is None  # one is out
    assert source_wait([now - 10, now - 20, now - 30], now, limits) == 3600 - 30
    # Two must leave: the oldest at 3560 s, the next at 3570 s.
    assert source_wait([now - 10, now - 20, now - 30, now - 40], now, limits) == 3600 - 30


def test_retry_after_is_whole_seconds_and_at_least_one():
    assert Refusal(429, "x", 0.2).headers() == {"Retry-After": "1"}
    assert Refusal(429, "x", 599.1).headers() == {"Retry-After": "600"}
    assert Refusal(403, "x").headers() == {}


def test_the_detail_says_what_happened_and_what_to_do():
    ok = outcome(
        "203.0.113.7:28967",
        28967,
        ProbeResult("reachable", "connected in 12 ms"),
        ProbeResult("reachable", "a QUIC server answered"),
        checked_at=5.0,
    )
    assert ok == {
        "tcp": "reachable",
        "udp": "reachable",
        "address": "203.0.113.7:28967",
        "checked_at": 5.0,
        "detail": "TCP to 203.0.113.7:28967 connected in 12 ms. UDP: a QUIC server "
        "answered, so QUIC reaches the node.",
    }
    bad = outcome(
        "203.0.113.7:28967",
        28967,
        ProbeResult("unreachable", "got no answer within 3 s"),
        ProbeResult("no_answer", "no answer to the QUIC probe within 3 s"),
        checked_at=5.0,
    )
    assert "Forward TCP port 28967 on the router" in bad["detail"]
    assert "forward UDP port 28967" in bad["detail"]
