"""Linux decisions on recorded tool outputs (recorded/linux/*.json: recorded on Debian 12
as root, as nobody, and in private network namespaces with real rules; firewalld's are
hand-written in its format and say so)."""

from __future__ import annotations

import json

import pytest

from nodekeeper.firewall.decision import decide
from nodekeeper.firewall.linux_rules import Packet, evaluate, parse_iptables, parse_nft
from nodekeeper.firewall.observations import LinuxObservation, ToolRun
from nodekeeper.firewall.target import Target
from nodekeeper.firewall.verdict import Verdict
from tests.firewall.recorded import PORT, linux, tool

TARGET = Target(PORT, "/usr/bin/storagenode", "listen in config.toml", host="0.0.0.0")
NOW = 1_796_000_000.0


def verdict(obs: LinuxObservation) -> Verdict:
    return decide(TARGET, obs, NOW)


def test_nothing_configured_is_allowed() -> None:
    v = verdict(
        linux(
            nft="host-nft",
            iptables="host-iptables",
            iptables_version="iptables-version-nft",
            ufw="host-ufw",
        )
    )
    assert v.status == "allowed"
    assert v.of("tcp").reason == "iptables: the policy accept of INPUT accepts inbound TCP 28967"
    assert v.notes == ("ufw is installed but inactive",)


def test_not_root_is_unknown_with_why() -> None:
    v = verdict(
        linux(
            1000,
            nft="nobody-nft",
            iptables="nobody-iptables",
            iptables_version="iptables-version-nft",
            ufw="nobody-ufw",
        )
    )
    assert v.status == "unknown"
    reason = v.of("udp").reason
    assert "ufw: `ufw status verbose` exited 1: ERROR: You need to be root" in reason
    assert (
        "nft: `nft -j list ruleset` exited 1: netlink: Error: cache initialization failed: "
        in reason
    )
    assert "Permission denied (you must be root)" in reason  # iptables' words
    assert reason.endswith("(reading the rules needs root; the check ran as uid 1000)")


def test_no_tool_installed_is_unknown() -> None:
    v = verdict(LinuxObservation(0, {}))
    assert v.status == "unknown"
    assert "no firewall tool was found" in v.of("tcp").reason


def test_nft_table_drops_udp_while_iptables_accepts_it() -> None:
    """Recorded in a namespace: an nftables table with policy drop that opens TCP only,
    and an iptables-nft rule for UDP. A packet must pass both: UDP is blocked, and the
    fix goes into the nftables chain that drops it."""
    v = verdict(
        linux(nft="netns-nft", iptables="netns-iptables", iptables_version="iptables-version-nft")
    )
    assert v.of("tcp").status == "allowed"
    assert (
        "nftables: the rule `tcp dport == 28967 accept` in inet fwtest input" in v.of("tcp").reason
    )
    udp = v.of("udp")
    assert udp.status == "blocked"
    assert udp.reason == "nftables: the policy drop of inet fwtest input drops inbound UDP 28967"
    assert udp.fix == ("nft insert rule inet fwtest input udp dport 28967 accept",)
    assert v.firewall == "iptables + nftables"


def test_ufw_active_decides_by_its_rules() -> None:
    v = verdict(
        linux(
            ufw="ufw-active",
            nft="ufw-nft",
            iptables="ufw-iptables",
            iptables_version="iptables-version-nft",
        )
    )
    assert v.firewall == "ufw"
    assert v.of("tcp").status == "allowed"
    assert "the ufw rule `28967/tcp ALLOW IN Anywhere`" in v.of("tcp").reason
    udp = v.of("udp")
    assert udp.status == "blocked"
    assert "`28967/udp DENY IN Anywhere`" in udp.reason
    # A deny rule matched first: the allow must be inserted before it.
    assert udp.fix == ("ufw insert 1 allow 28967/udp",)


def test_ufw_default_deny_needs_an_appended_allow() -> None:
    packet = Packet("tcp", 9999)
    from nodekeeper.firewall.linux_rules import parse_ufw

    result = evaluate(parse_ufw(tool("ufw-active").stdout, packet))
    assert result.status == "blocked"
    assert not result.endings[0].by_rule  # the default policy, so `ufw allow` suffices
    v = decide(Target(9999, None, "x", host="0.0.0.0"), linux(ufw="ufw-active"), NOW)
    assert v.of("tcp").fix == ("ufw allow 9999/tcp",)


def test_ufw_limit_is_too_little_for_a_node() -> None:
    v = decide(Target(7777, None, "x", host="0.0.0.0"), linux(ufw="ufw-active"), NOW)
    assert v.of("tcp").status == "blocked"
    assert "LIMIT: 6 connections in 30 s per address" in v.of("tcp").reason


def test_ufw_rule_from_one_subnet_is_unknown() -> None:
    v = decide(Target(7005, None, "x", host="0.0.0.0"), linux(ufw="ufw-active"), NOW)
    assert v.of("udp").status == "unknown"
    assert "from 192.168.1.0/24" in v.of("udp").reason


def test_the_ufw_ruleset_read_through_iptables_matches_ufw() -> None:
    """Without ufw's view (ufw not installed), the same kernel rules read through
    iptables -S give the same answer: conntrack, addrtype and limit are understood."""
    v = verdict(
        linux(nft="ufw-nft", iptables="ufw-iptables", iptables_version="iptables-version-nft")
    )
    assert (v.of("tcp").status, v.of("udp").status) == ("allowed", "blocked")
    assert v.of("udp").fix == ("iptables -I INPUT -p udp --dport 28967 -j ACCEPT",)


def test_the_ufw_ruleset_through_nft_alone_is_unknown() -> None:
    """nft shows iptables-nft's matches as opaque xt expressions: it cannot tell."""
    v = verdict(linux(nft="ufw-nft"))
    assert v.status == "unknown"
    assert "the iptables match conntrack (not shown by nft)" in v.of("tcp").reason


def test_legacy_iptables_and_nft_are_both_read() -> None:
    v = verdict(
        linux(nft="netns-nft", iptables="host-iptables", iptables_version="iptables-version-legacy")
    )
    assert v.of("udp").status == "blocked"


def test_firewalld_port_open_in_the_zone() -> None:
    v = verdict(
        linux(firewalld_state="firewalld-running", firewalld="firewalld-public", nft="nobody-nft")
    )
    assert v.firewall == "firewalld"
    assert v.of("tcp").status == "allowed"
    assert "the port 28967/tcp of the zone public" in v.of("tcp").reason
    udp = v.of("udp")
    assert udp.status == "unknown"  # open only to 10.0.0.0/8 by a rich rule
    assert "an address" in udp.reason


def test_firewalld_default_zone_closed() -> None:
    v = decide(
        Target(7005, None, "x", host="0.0.0.0"),
        linux(firewalld_state="firewalld-running", firewalld="firewalld-public"),
        NOW,
    )
    udp = v.of("udp")
    assert udp.status == "blocked"
    assert "reject" in udp.reason
    tcp = v.of("tcp")
    assert tcp.status == "blocked" and "the policy drop of zone public" in tcp.reason
    assert tcp.fix == ("firewall-cmd --permanent --add-port=7005/tcp", "firewall-cmd --reload")
    assert v.notes == (
        "the zone's services (cockpit dhcpv6-client ssh) were not resolved to ports",
    )


def test_fedora_workstation_opens_high_ports() -> None:
    v = verdict(linux(firewalld_state="firewalld-running", firewalld="firewalld-fedora-default"))
    assert v.status == "allowed"


def test_firewalld_not_running_falls_through_to_the_kernel_rules() -> None:
    v = verdict(
        linux(
            firewalld_state="firewalld-not-running",
            nft="host-nft",
            iptables="host-iptables",
            iptables_version="iptables-version-nft",
        )
    )
    assert v.status == "allowed" and v.firewall == "iptables"


def test_a_timed_out_tool_is_unknown() -> None:
    run = ToolRun(
        ("nft", "-j", "list", "ruleset"),
        None,
        error="`nft -j list ruleset` did not finish within 5 s",
    )
    v = verdict(LinuxObservation(0, {"nft": run}))
    assert v.status == "unknown"
    assert "did not finish within 5 s" in v.of("tcp").reason


def test_blocked_by_one_reader_wins_over_another_that_cannot_be_read() -> None:
    v = verdict(linux(nft="netns-nft", iptables="nobody-iptables"))
    assert v.of("udp").status == "blocked"
    assert v.of("tcp").status == "unknown"  # nft accepts, but iptables could not be read


# -- the rule walk, on hand-made rulesets --------------------------------------------------


def _nft(rules: list[list[dict[str, object]]], policy: str = "drop") -> str:
    items: list[dict[str, object]] = [
        {"table": {"family": "inet", "name": "t"}},
        {
            "chain": {
                "family": "inet",
                "table": "t",
                "name": "in",
                "type": "filter",
                "hook": "input",
                "prio": 0,
                "policy": policy,
            }
        },
        {"chain": {"family": "inet", "table": "t", "name": "sub"}},
    ]
    for chain, expr in rules:
        items.append({"rule": {"family": "inet", "table": "t", "chain": chain, "expr": expr}})
    return json.dumps({"nftables": items})


def _match(left: dict[str, object], right: object, op: str = "==") -> dict[str, object]:
    return {"match": {"op": op, "left": left, "right": right}}


TCP_DPORT = {"payload": {"protocol": "tcp", "field": "dport"}}
TH_DPORT = {"payload": {"protocol": "th", "field": "dport"}}
SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}
L4 = {"meta": {"key": "l4proto"}}


@pytest.mark.parametrize(
    ("rules", "tcp", "udp"),
    [
        (
            [
                [
                    "in",
                    [_match(TCP_DPORT, {"set": [22, {"range": [28000, 29000]}]}), {"accept": None}],
                ]
            ],
            "allowed",
            "blocked",
        ),
        (
            [
                [
                    "in",
                    [
                        _match(L4, {"set": ["tcp", "udp"]}),
                        _match(TH_DPORT, 28967),
                        {"accept": None},
                    ],
                ]
            ],
            "allowed",
            "allowed",
        ),
        (
            [["in", [_match(TCP_DPORT, 28967, "!="), {"drop": None}]], ["in", [{"accept": None}]]],
            "allowed",
            "allowed",
        ),
        (
            [["in", [_match(SADDR, {"prefix": {"addr": "10.0.0.0", "len": 8}}), {"accept": None}]]],
            "unknown",
            "unknown",
        ),
        ([["in", [_match(TCP_DPORT, "@open_ports"), {"accept": None}]]], "unknown", "blocked"),
        (
            [
                ["in", [{"jump": {"target": "sub"}}]],
                ["sub", [_match(TH_DPORT, 28967), {"accept": None}]],
            ],
            "allowed",
            "allowed",
        ),
        (
            [["in", [{"jump": {"target": "sub"}}]], ["sub", [{"return": None}]]],
            "blocked",
            "blocked",
        ),
        (
            [["in", [{"goto": {"target": "sub"}}]], ["in", [{"accept": None}]], ["sub", []]],
            "blocked",
            "blocked",
        ),
        (
            [
                ["in", [_match({"meta": {"key": "iifname"}}, "lo"), {"drop": None}]],
                ["in", [{"accept": None}]],
            ],
            "allowed",
            "allowed",
        ),
        (
            [
                [
                    "in",
                    [
                        _match({"ct": {"key": "state"}}, ["established", "related"], "in"),
                        {"drop": None},
                    ],
                ],
                ["in", [_match({"ct": {"key": "state"}}, "new"), {"accept": None}]],
            ],
            "allowed",
            "allowed",
        ),
        (
            [["in", [_match({"meta": {"key": "iifname"}}, "eth0"), {"accept": None}]]],
            "unknown",
            "unknown",
        ),
        (
            [["in", [{"vmap": {"key": {"meta": {"key": "iifname"}}, "data": "@zones"}}]]],
            "unknown",
            "unknown",
        ),
        (
            [["in", [{"limit": {"rate": 10}}, _match(TCP_DPORT, 28967), {"reject": None}]]],
            "blocked",
            "blocked",
        ),
    ],
)
def test_nft_walk(rules: list[list[dict[str, object]]], tcp: str, udp: str) -> None:
    text = _nft(rules)
    got = [evaluate(parse_nft(text, Packet(p, PORT))).status for p in ("tcp", "udp")]  # type: ignore[arg-type]
    assert got == [tcp, udp]


def test_nft_without_an_input_chain_filters_nothing() -> None:
    result = evaluate(parse_nft(tool("host-nft").stdout, Packet("tcp", PORT)))
    assert result.status == "allowed"


IPT_BASE = "-P INPUT DROP\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n"


@pytest.mark.parametrize(
    ("rules", "tcp", "udp"),
    [
        ("-A INPUT -p tcp -m multiport --dports 80,28000:29000 -j ACCEPT", "allowed", "blocked"),
        ("-A INPUT ! -i lo -p udp -m udp --dport 28967 -j ACCEPT", "blocked", "allowed"),
        ("-A INPUT -s 10.0.0.0/8 -j ACCEPT", "unknown", "unknown"),
        (
            "-A INPUT -m conntrack --ctstate NEW -m tcp -p tcp --dport 28967 -j ACCEPT",
            "allowed",
            "blocked",
        ),
        ("-A INPUT -m conntrack ! --ctstate NEW -j ACCEPT", "blocked", "blocked"),
        ("-A INPUT -p tcp --syn --dport 28967 -j ACCEPT", "allowed", "blocked"),
        (
            '-A INPUT -p udp --dport 28967 -m comment --comment "storj node" -j ACCEPT',
            "blocked",
            "allowed",
        ),
        ("-A INPUT -d 224.0.0.251/32 -j ACCEPT", "blocked", "blocked"),
        ("-A INPUT -j LOG --log-prefix DROP:\n-A INPUT -j ACCEPT", "allowed", "allowed"),
        ("-A INPUT -j SOMETHING_ELSE", "unknown", "unknown"),
    ],
)
def test_iptables_walk(rules: str, tcp: str, udp: str) -> None:
    text = IPT_BASE + rules + "\n"
    got = [evaluate(parse_iptables(text, Packet(p, PORT))).status for p in ("tcp", "udp")]  # type: ignore[arg-type]
    assert got == [tcp, udp]


def test_recordings_survive_json() -> None:
    obs = linux(nft="netns-nft", iptables="netns-iptables")
    assert LinuxObservation.from_dict(obs.as_dict()) == obs
