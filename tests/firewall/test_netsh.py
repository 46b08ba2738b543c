"""The netsh rule commands, by exactly what they would run (Wine's netsh accepts anything
and exits 0, so only the command lines themselves can be checked on Linux)."""

from __future__ import annotations

import pytest

from nodekeeper.firewall import msi_custom_actions, netsh

PROGRAM = "C:\\Program Files\\Storj\\Storage Node\\storagenode.exe"


def test_allow_is_delete_then_add_per_protocol() -> None:
    commands = netsh.allow_commands(28967, PROGRAM)
    assert [c.argv for c in commands] == [
        (
            "netsh",
            "advfirewall",
            "firewall",
            "delete",
            "rule",
            "name=nodekeeper storagenode TCP 28967",
            "dir=in",
        ),
        (
            "netsh",
            "advfirewall",
            "firewall",
            "add",
            "rule",
            "name=nodekeeper storagenode TCP 28967",
            "dir=in",
            "action=allow",
            "protocol=TCP",
            "localport=28967",
            f"program={PROGRAM}",
            "profile=any",
            "enable=yes",
            "description=Inbound TCP 28967 for the storage node (nodekeeper)",
        ),
        (
            "netsh",
            "advfirewall",
            "firewall",
            "delete",
            "rule",
            "name=nodekeeper storagenode UDP 28967",
            "dir=in",
        ),
        (
            "netsh",
            "advfirewall",
            "firewall",
            "add",
            "rule",
            "name=nodekeeper storagenode UDP 28967",
            "dir=in",
            "action=allow",
            "protocol=UDP",
            "localport=28967",
            f"program={PROGRAM}",
            "profile=any",
            "enable=yes",
            "description=Inbound UDP 28967 for the storage node (nodekeeper)",
        ),
    ]
    assert [c.ignore_failure for c in commands] == [True, False, True, False]


def test_command_lines_quote_values_with_spaces() -> None:
    add = netsh.add_rule("tcp", 28967, PROGRAM)
    assert add.command_line == (
        'netsh advfirewall firewall add rule name="nodekeeper storagenode TCP 28967" dir=in '
        "action=allow protocol=TCP localport=28967 "
        'program="C:\\Program Files\\Storj\\Storage Node\\storagenode.exe" profile=any '
        'enable=yes description="Inbound TCP 28967 for the storage node (nodekeeper)"'
    )
    assert add.with_executable("C:\\Windows\\System32\\netsh.exe").startswith(
        "C:\\Windows\\System32\\netsh.exe advfirewall firewall add rule "
    )
    assert netsh.delete_rule("udp", 7000).command_line == (
        'netsh advfirewall firewall delete rule name="nodekeeper storagenode UDP 7000" dir=in'
    )


def test_a_rule_without_program_is_on_the_port_alone() -> None:
    assert not any(a.startswith("program=") for a in netsh.add_rule("udp", 28967, None).args)


def test_msi_actions_take_property_references() -> None:
    actions = msi_custom_actions("[NODE_PORT]", "[INSTALLDIR]node\\storagenode.exe")
    assert [c.arguments for c in actions.install] == [
        'advfirewall firewall delete rule name="nodekeeper storagenode TCP [NODE_PORT]" dir=in',
        'advfirewall firewall add rule name="nodekeeper storagenode TCP [NODE_PORT]" dir=in '
        "action=allow protocol=TCP localport=[NODE_PORT] "
        "program=[INSTALLDIR]node\\storagenode.exe profile=any enable=yes "
        'description="Inbound TCP [NODE_PORT] for the storage node (nodekeeper)"',
        'advfirewall firewall delete rule name="nodekeeper storagenode UDP [NODE_PORT]" dir=in',
        'advfirewall firewall add rule name="nodekeeper storagenode UDP [NODE_PORT]" dir=in '
        "action=allow protocol=UDP localport=[NODE_PORT] "
        "program=[INSTALLDIR]node\\storagenode.exe profile=any enable=yes "
        'description="Inbound UDP [NODE_PORT] for the storage node (nodekeeper)"',
    ]
    assert [c.ignore_failure for c in actions.install] == [True, False, True, False]
    assert [c.arguments for c in actions.uninstall] == [
        'advfirewall firewall delete rule name="nodekeeper storagenode TCP [NODE_PORT]" dir=in',
        'advfirewall firewall delete rule name="nodekeeper storagenode UDP [NODE_PORT]" dir=in',
    ]
    assert all(c.ignore_failure for c in actions.uninstall)


@pytest.mark.parametrize(
    ("port", "program"),
    [
        (0, None),
        (65536, None),
        (True, None),
        ("28967; del", None),
        ("[bad prop", None),
        (28967, "storagenode.exe"),
        (28967, 'C:\\a"b.exe'),
        (28967, "C:\\a\nb.exe"),
    ],
)
def test_what_netsh_would_misread_is_refused(port: object, program: str | None) -> None:
    with pytest.raises(ValueError):
        msi_custom_actions(port, program)  # type: ignore[arg-type]


def test_port_given_as_digits_is_a_port() -> None:
    assert netsh.rule_name("tcp", 28967) == "nodekeeper storagenode TCP 28967"
    assert netsh.delete_rule("tcp", "28967").args == netsh.delete_rule("tcp", 28967).args


def test_fixes_for_other_causes() -> None:
    assert netsh.disable_rule("Block my node").command_line == (
        'netsh advfirewall firewall set rule name="Block my node" dir=in new enable=no'
    )
    assert netsh.unblock_profile(2).command_line == (
        "netsh advfirewall set privateprofile firewallpolicy blockinbound,allowoutbound"
    )


def test_own_rules_are_known_by_name() -> None:
    assert netsh.is_own_rule("nodekeeper storagenode UDP 28967")
    assert not netsh.is_own_rule("nodekeeper storagenodes")
