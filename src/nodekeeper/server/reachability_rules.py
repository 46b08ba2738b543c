"""The reachability check's decisions (pure; decision 082): whom the control plane may
dial, when, and what the outcome means in words.

The rules that keep the dial-back from becoming a port scanner, each enforced here:

- **Only the requester's own address.** The address dialled is the source address of
  the signed request (``client_address``), never the name a node declares; a declared
  name must resolve to that address (``check_declared``). A TCP request's source cannot
  be forged (the handshake), so nobody can make us dial a third party.
- **A proxy's word only when we trust the proxy.** ``X-Forwarded-For`` is read only when
  the peer is one of ``server run --trusted-proxy``'s networks (default none), walking
  from the right past trusted hops, so a client cannot put another address there.
- **Only the declared port**, one per request, and one TCP connect plus one QUIC probe
  (sent twice against loss) per check.
- **Rate limits** per node (``node_interval``, 10 minutes) and per source address
  (``per_source`` distinct nodes an hour): node identities are free to make, so the
  per-node limit alone would not stop one address from asking again and again.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NODE_INTERVAL = 600.0  # one check per node per 10 minutes
SOURCE_WINDOW = 3600.0
PER_SOURCE = 30  # distinct nodes checked from one address per SOURCE_WINDOW
TCP_DEADLINE = 3.0
UDP_DEADLINE = 3.0
MAX_BODY = 4096

TcpStatus = Literal["reachable", "unreachable"]
UdpStatus = Literal["reachable", "no_answer", "unreachable"]


class Refusal(Exception):
    """A check not made: the HTTP status, and a message saying why and what to do."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


@dataclass(frozen=True)
class Limits:
    node_interval: float = NODE_INTERVAL
    per_source: int = PER_SOURCE
    source_window: float = SOURCE_WINDOW


# -- the address ---------------------------------------------------------------------------


def parse_ip(text: str) -> IPAddress | None:
    """An IP address (IPv4-mapped IPv6 as its IPv4 address, as sockets report it), or
    None for anything else."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_trusted(items: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``--trusted-proxy`` values: addresses or networks; ValueError says which is wrong."""
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"--trusted-proxy {item!r} is not an IP address or network; give the "
                "reverse proxy's address, e.g. 127.0.0.1 or 10.0.0.0/8"
            ) from None
    return tuple(networks)


def _trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> IPAddress:
    """The address the request came from: the TCP peer, or, when the peer is a trusted
    proxy, the right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy
    (entries left of that one were written by the client and prove nothing)."""
    address = parse_ip(peer or "")
    if address is None:
        raise Refusal(400, "the control plane cannot tell the address this request came from")
    if not forwarded_for or not _trusted(address, trusted):
        return address
    for entry in reversed([e for e in forwarded_for.split(",") if e.strip()]):
        hop = parse_ip(entry)
        if hop is None:
            raise Refusal(
                400,
                f"the trusted proxy sent an X-Forwarded-For entry {entry.strip()!r} that is "
                "not an IP address; check the proxy's configuration",
            )
        if not _trusted(hop, trusted):
            return hop
        address = hop
    return address


def parse_declared(text: object) -> tuple[str, int]:
    """The node's declared ``HOST:PORT`` (``[v6]:PORT`` for IPv6)."""
    form = "write HOST:PORT, e.g. mynode.example.com:28967 or 203.0.113.7:28967"
    if not isinstance(text, str) or not text.strip() or len(text) > 300:
        raise Refusal(400, f"address must be the node's public address: {form}")
    value = text.strip()
    if value.startswith("["):
        host, close, rest = value[1:].partition("]")
        port_text = rest[1:] if close and rest.startswith(":") else ""
    else:
        host, _, port_text = value.rpartition(":")
        if ":" in host:
            raise Refusal(
                400, f"address {value!r}: write HOST:PORT with an IPv6 host in brackets, [v6]:PORT"
            )
    if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise Refusal(400, f"address {value!r} is not HOST:PORT with a port 1-65535: {form}")
    if "/" in host or any(c.isspace() for c in host):
        raise Refusal(400, f"address {value!r} is not HOST:PORT: {form}")
    return host, int(port_text)


def check_declared(host: str, resolved: Iterable[str], source: IPAddress) -> None:
    """Refuses a declared host that is not the requester's address, as a literal or by
    name. ``resolved``: the host's addresses (the literal itself for an IP)."""
    addresses = {a for a in (parse_ip(r) for r in resolved) if a is not None}
    if source in addresses:
        return
    shown = ", ".join(sorted(map(str, addresses))) or "no address"
    literal = parse_ip(host) is not None
    what = f"{host} is" if literal else f"{host} resolves to {shown}, which is"
    raise Refusal(
        403,
        f"{what} not the address this request came from ({source}): the control plane "
        "dials back only the address that asks, so run the check from the node's own "
        "machine and network, and make the node's external address name that address "
        "(behind a reverse proxy, start the server with --trusted-proxy PROXY_ADDRESS)",
    )


# -- the rate limits -----------------------------------------------------------------------


def node_wait(last_checked_at: float | None, now: float, limits: Limits) -> float | None:
    """Seconds until this node may be checked again; None: now."""
    if last_checked_at is None:
        return None
    left = last_checked_at + limits.node_interval - now
    return left if left > 0 else None


def source_wait(recent: Sequence[float], now: float, limits: Limits) -> float | None:
    """Seconds until the source address may have another node checked, from the check
    times of the other nodes it had checked in the window; None: now."""
    inside = sorted(t for t in recent if t > now - limits.source_window)
    if len(inside) < limits.per_source:
        return None
    # The oldest checks must leave the window until one slot is free.
    return max(1.0, inside[len(inside) - limits.per_source] + limits.source_window - now)


def node_limited(wait: float, interval: float) -> Refusal:
    return Refusal(
        429,
        f"this node was checked less than {interval / 60:g} minutes ago; the last result "
        f"stands, ask again in {math.ceil(wait)} s",
        retry_after=wait,
    )


def source_limited(wait: float, limits: Limits) -> Refusal:
    return Refusal(
        429,
        f"{limits.per_source} nodes from this address were checked in the last "
        f"{limits.source_window / 60:g} minutes, the most the control plane dials back to one "
        f"address; ask again in {math.ceil(wait)} s",
        retry_after=wait,
    )


# -- the outcome ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    status: str  # TcpStatus or UdpStatus
    why: str  # what happened, in words ("connected in 12 ms", "refused", ...)


def outcome(
    address: str, port: int, tcp: ProbeResult, udp: ProbeResult, checked_at: float
) -> dict[str, Any]:
    """The answer's body: both statuses and one paragraph saying what happened and what
    to do about it."""
    sentences = []
    if tcp.status == "reachable":
        sentences.append(f"TCP to {address} {tcp.why}.")
    else:
        sentences.append(
            f"TCP to {address} {tcp.why}: the node cannot be reached from outside. Forward "
            f"TCP port {port} on the router to this machine, allow it in the firewall "
            "(`nodekeeper firewall allow`), and check that the node runs and listens on "
            "all interfaces, not 127.0.0.1."
        )
    if udp.status == "reachable":
        sentences.append(f"UDP: {udp.why}, so QUIC reaches the node.")
    elif udp.status == "unreachable":
        sentences.append(
            f"UDP: {udp.why}: nothing listens on UDP port {port}, or it is not forwarded "
            "to this machine; forward UDP as well as TCP for QUIC."
        )
    else:
        sentences.append(
            f"UDP: {udp.why}: forward UDP port {port} to this machine and allow it in the "
            "firewall; a node that does not speak QUIC never answers (then this is "
            "expected, and TCP alone is used)."
        )
    return {
        "tcp": tcp.status,
        "udp": udp.status,
        "address": address,
        "checked_at": checked_at,
        "detail": " ".join(sentences),
    }


def show_address(ip: IPAddress, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
