"""Windows Firewall decisions on recorded answers (pure: recorded/windows/*.json in,
verdict out). Each file is one machine's state as the COM probe returns it; the cases
around them change one answer at a time."""

from __future__ import annotations

import dataclasses

import pytest

from nodekeeper.firewall import netsh
from nodekeeper.firewall.decision import decide
from nodekeeper.firewall.observations import PortAnswer, SecurityProduct, WindowsObservation
from nodekeeper.firewall.target import Target
from nodekeeper.firewall.verdict import Verdict
from nodekeeper.firewall.windows_decision import normalise_path, ports_include
from tests.firewall.recorded import NODE, PORT, windows

TARGET = Target(PORT, NODE, "listen in config.toml", host="0.0.0.0")
NOW = 1_796_000_000.0


def verdict(obs: WindowsObservation, target: Target = TARGET) -> Verdict:
    return decide(target, obs, NOW)


def own_fix(protocol: str) -> tuple[str, ...]:
    return tuple(c.command_line for c in netsh.allow_commands(PORT, NODE, (protocol,)))  # type: ignore[arg-type]


def test_firewall_on_and_no_rule_is_blocked_with_the_netsh_fix() -> None:
    v = verdict(windows("home-public-no-rule"))
    assert v.status == "blocked"
    for protocol in ("tcp", "udp"):
        p = v.of(protocol)  # type: ignore[arg-type]
        assert p.status == "blocked"
        assert f"no enabled inbound rule allows {protocol.upper()} 28967" in p.reason
        assert "public profile" in p.reason
        assert p.fix == own_fix(protocol)
        assert p.allow_fixes
    assert v.fix_note == "from an elevated prompt (Run as administrator)"
    # The noise of a home PC (Spotify, Steam, a declined python.exe) is not the node's.
    assert "Spotify" not in v.of("tcp").reason


def test_own_rules_with_a_variable_and_another_case_allow_both() -> None:
    v = verdict(windows("home-own-rules"))
    assert (v.status, v.of("tcp").status, v.of("udp").status) == ("allowed",) * 3
    assert "nodekeeper storagenode TCP 28967" in v.of("tcp").reason
    assert v.fix() == ()


def test_rules_for_the_previous_version_are_another_programs() -> None:
    """After an update the node runs from a new directory: the old rules do not admit it."""
    v = verdict(windows("home-rules-for-old-version"))
    assert v.status == "blocked"
    reason = v.of("tcp").reason
    assert "'nodekeeper storagenode TCP 28967' is for another program" in reason
    assert "1.2.0" in reason
    # Delete-then-add replaces the stale rule (same name) instead of adding a second one.
    assert v.of("tcp").fix[0].startswith('netsh advfirewall firewall delete rule name="nodekeeper')


def test_disabled_rules_do_not_count() -> None:
    v = verdict(windows("home-own-rules-disabled"))
    assert v.status == "blocked"
    assert "'nodekeeper storagenode UDP 28967' is disabled" in v.of("udp").reason


def test_a_block_rule_wins_over_the_allow_rules() -> None:
    v = verdict(windows("home-declined-prompt-block-wins"))
    p = v.of("tcp")
    assert p.status == "blocked"
    assert "the block rule 'storagenode.exe'" in p.reason
    assert p.fix == (
        "netsh advfirewall firewall set rule name=storagenode.exe dir=in new enable=no",
    )
    assert not p.allow_fixes  # `nodekeeper firewall allow` would not help: say the real fix


def test_block_rules_for_other_programs_do_not_block_the_node() -> None:
    """home-public-no-rule has python.exe block rules (a declined prompt): not the node's."""
    obs = windows("home-own-rules")
    assert any(r.action == 0 and r.name == "python.exe" for r in obs.rules or ())
    assert verdict(obs).status == "allowed"


def test_firewall_off_in_every_active_profile_is_allowed() -> None:
    v = verdict(windows("home-firewall-off"))
    assert v.status == "allowed"
    assert v.of("tcp").reason == "Windows Firewall is off in the private profile"


def test_an_active_third_party_firewall_makes_it_unknown_with_its_name() -> None:
    v = verdict(windows("home-third-party"))
    assert v.status == "unknown"
    assert v.firewall == "Norton Firewall (third-party)"
    reason = v.of("udp").reason
    assert reason.startswith("Norton Firewall is registered as the active firewall")
    assert "allow inbound UDP 28967 for C:\\ProgramData" in reason
    assert "Windows Firewall itself: allowed" in reason


def test_a_third_party_product_that_is_off_is_ignored() -> None:
    obs = dataclasses.replace(
        windows("home-third-party"), products=(SecurityProduct("Norton Firewall", 0x010000),)
    )
    assert verdict(obs).status == "allowed"


@pytest.mark.parametrize(
    ("state", "enabled"),
    [(0x041000, True), (0x040000, False), (0x061100, True), (0x060100, False), (0x011010, True)],
)
def test_security_center_product_state_bits(state: int, enabled: bool) -> None:
    assert SecurityProduct("X", state).enabled is enabled


def test_block_all_incoming_overrides_allow_rules() -> None:
    v = verdict(windows("home-block-all"))
    p = v.of("tcp")
    assert p.status == "blocked"
    assert "blocks all incoming connections" in p.reason
    assert p.fix == (
        "netsh advfirewall set publicprofile firewallpolicy blockinbound,allowoutbound",
    )


def test_every_active_profile_must_allow() -> None:
    """Rules for the domain profile only: blocked through the public one."""
    v = verdict(windows("laptop-domain-and-public"))
    p = v.of("tcp")
    assert p.status == "blocked"
    assert "in the public profile" in p.reason
    assert "does not apply to the public profile" in p.reason


def test_a_rule_limited_to_the_local_subnet_is_blocked_from_the_internet() -> None:
    v = verdict(windows("home-rule-local-subnet"))
    p = v.of("tcp")
    assert p.status == "blocked"
    assert "allows inbound TCP 28967 only from LocalSubnet" in p.reason
    assert p.allow_fixes


def test_firewall_service_stopped_is_unknown_with_the_error() -> None:
    v = verdict(windows("service-stopped"))
    assert v.status == "unknown"
    assert "the Windows Firewall service is not running" in v.of("tcp").reason


def test_wine_answers_unknown_not_allowed() -> None:
    """Recorded under Wine 8 (tests/windows/test_firewall_wine.py): no call answers."""
    v = verdict(windows("wine"))
    assert (v.of("tcp").status, v.of("udp").status) == ("unknown", "unknown")
    assert "E_NOTIMPL" in v.of("tcp").reason
    assert any("WBEM_E_INVALID_NAMESPACE" in note for note in v.notes)


def test_is_port_allowed_disagreeing_with_the_rules_is_unknown() -> None:
    obs = dataclasses.replace(
        windows("home-own-rules"),
        port_allowed={"tcp": PortAnswer(False, False), "udp": PortAnswer(True, False)},
    )
    v = verdict(obs)
    assert v.of("udp").status == "allowed"
    tcp = v.of("tcp")
    assert tcp.status == "unknown"
    assert "the rules say allowed" in tcp.reason and "IsPortAllowed says not allowed" in tcp.reason


def test_is_port_allowed_decides_when_the_rules_cannot_be_read() -> None:
    base = windows("home-own-rules")
    errors = {"rules": "0x80070005 E_ACCESSDENIED: access denied"}
    allowed = dataclasses.replace(base, rules=None, errors=errors)
    assert verdict(allowed).of("tcp").status == "allowed"
    assert "IsPortAllowed says allowed" in verdict(allowed).of("tcp").reason
    blocked = dataclasses.replace(
        allowed, port_allowed={"tcp": PortAnswer(False, False), "udp": PortAnswer(True, True)}
    )
    v = verdict(blocked)
    assert v.of("tcp").status == "blocked" and v.of("tcp").fix == own_fix("tcp")
    assert "allowed from some addresses only" in v.of("udp").reason
    no_answer = dataclasses.replace(allowed, port_allowed={})
    assert "could not read the firewall rules: 0x80070005" in verdict(no_answer).of("tcp").reason


def test_an_unknown_program_with_program_scoped_rules_is_unknown() -> None:
    obs = dataclasses.replace(windows("home-own-rules"), port_allowed={})
    v = verdict(obs, dataclasses.replace(TARGET, program=None))
    assert v.status == "unknown"
    assert "the node's program is not known" in v.of("tcp").reason


def test_an_unknown_program_is_fine_when_the_firewall_is_off() -> None:
    v = verdict(windows("home-firewall-off"), dataclasses.replace(TARGET, program=None))
    assert v.status == "allowed"


def test_a_port_only_rule_covers_any_program() -> None:
    obs = windows("home-public-no-rule")
    rules = (obs.rules or ()) + (
        dataclasses.replace(_own(obs), application=None, local_ports="28000-29000", protocol=256),
    )
    v = verdict(dataclasses.replace(obs, rules=rules, port_allowed={}))
    assert v.status == "allowed"


def test_group_policy_override_is_said_with_the_fix() -> None:
    obs = dataclasses.replace(windows("home-public-no-rule"), local_policy_modify_state=1)
    assert "group policy controls this firewall" in verdict(obs).of("tcp").reason


def test_service_scoped_rules_are_not_the_nodes() -> None:
    obs = windows("home-own-rules")
    rules = tuple(
        dataclasses.replace(r, service="*") if r.name.startswith("nodekeeper") else r
        for r in obs.rules or ()
    )
    v = verdict(dataclasses.replace(obs, rules=rules, port_allowed={}))
    assert v.status == "blocked"
    assert "is for services only" in v.of("tcp").reason


def test_no_active_profile_bits_is_unknown() -> None:
    obs = dataclasses.replace(windows("home-own-rules"), current_profiles=0, port_allowed={})
    v = verdict(obs)
    assert v.status == "unknown"


def test_a_loopback_node_is_unknown_whatever_the_firewall() -> None:
    target = Target(PORT, NODE, "x", host="127.0.0.1", problem="the node listens on 127.0.0.1 only")
    v = decide(target, windows("home-public-no-rule"), NOW)
    assert v.status == "unknown" and v.of("tcp").reason == "the node listens on 127.0.0.1 only"


@pytest.mark.parametrize(
    ("ports", "covered"),
    [
        ("*", True),
        ("", True),
        ("28967", True),
        ("28960-28970", True),
        ("80,443,28967", True),
        ("80, 28967", True),
        ("28968-29000", False),
        ("RPC", False),
        ("IPHTTPS", False),
        ("5353", False),
    ],
)
def test_local_ports(ports: str, covered: bool) -> None:
    assert ports_include(ports, PORT) is covered


def test_paths_compare_as_windows_does() -> None:
    env = {"ProgramData": "C:\\ProgramData", "SystemRoot": "C:\\WINDOWS"}
    assert normalise_path("%programdata%\\A\\..\\A\\b.EXE", env) == normalise_path(
        "c:/programdata/a/b.exe", {}
    )
    assert normalise_path("%Unknown%\\x.exe", env) == "%unknown%\\x.exe"


def test_the_verdict_survives_json() -> None:
    v = verdict(windows("home-declined-prompt-block-wins"))
    assert Verdict.from_dict(v.as_dict()) == v
    assert v.as_dict()["summary"] == "TCP blocked, UDP blocked (port 28967, Windows Firewall)"


def test_recordings_survive_json() -> None:
    for name in ("home-own-rules", "wine", "home-third-party"):
        obs = windows(name)
        assert WindowsObservation.from_dict(obs.as_dict()) == obs


def _own(obs: WindowsObservation):  # type: ignore[no-untyped-def]
    from nodekeeper.firewall.observations import WindowsRule

    return WindowsRule(name="Open 28xxx", enabled=True, direction=1, action=1, protocol=6)
