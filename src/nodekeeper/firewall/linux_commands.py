"""The commands that open the node's port in each Linux firewall tool (pure).

They are printed, never run, by the keeper and by `nodekeeper firewall allow` (decision
065): a Linux machine's firewall belongs to its administrator, each tool keeps its rules
in its own place across reboots, and an inserted rule is easy to check before it goes
live. Each command inserts or adds one accept for the protocol and port.
"""

from __future__ import annotations

from nodekeeper.firewall.verdict import Protocol

FIX_NOTE = "as root (sudo)"
PERSISTENCE = (
    "rules added with nft or iptables last until the next reboot unless they are saved "
    "where the distribution loads them (/etc/nftables.conf, iptables-persistent)"
)


def nft_allow(chain: str, protocol: Protocol, port: int) -> list[str]:
    """``chain`` is the base chain as the evaluation names it: "FAMILY TABLE CHAIN"."""
    return [f"nft insert rule {chain} {protocol} dport {port} accept"]


def iptables_allow(protocol: Protocol, port: int) -> list[str]:
    return [f"iptables -I INPUT -p {protocol} --dport {port} -j ACCEPT"]


def ufw_allow(protocol: Protocol, port: int, *, before_rules: bool) -> list[str]:
    """``before_rules``: a deny or limit rule matched first, so the allow must come
    before it (``ufw insert 1``; plain ``allow`` appends)."""
    if before_rules:
        return [f"ufw insert 1 allow {port}/{protocol}"]
    return [f"ufw allow {port}/{protocol}"]


def firewalld_allow(protocol: Protocol, port: int) -> list[str]:
    return [f"firewall-cmd --permanent --add-port={port}/{protocol}", "firewall-cmd --reload"]


def allow_for(tool: str, protocol: Protocol, port: int, chain: str = "") -> list[str]:
    """The commands for a tool by the name the verdict gives it."""
    if tool == "ufw":
        return ufw_allow(protocol, port, before_rules=False)
    if tool == "firewalld":
        return firewalld_allow(protocol, port)
    if tool == "nftables" and chain:
        return nft_allow(chain, protocol, port)
    return iptables_allow(protocol, port)
