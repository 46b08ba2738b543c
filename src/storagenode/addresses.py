"""``HOST:PORT`` listen addresses (pure)."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple


class InvalidAddressError(ValueError):
    """The text is not a usable listen address."""


class Address(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse ``host:port``, ``[v6]:port`` or ``:port`` (all interfaces)."""
    raw = text.strip() if isinstance(text, str) else ""
    host, sep, port_text = raw.rpartition(":")
    if not sep or not port_text.isdigit():
        raise InvalidAddressError(
            f"{text!r} is not an address: write HOST:PORT, e.g. 127.0.0.1:28967 or :28967"
        )
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise InvalidAddressError(f"{text!r}: port {port} is out of range 0-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise InvalidAddressError(f"{text!r}: write IPv6 hosts in brackets, e.g. [::1]:28967")
    return Address(host or "0.0.0.0", port)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IPs: the control address must never be reachable
    from the network, since it can stop the node."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
