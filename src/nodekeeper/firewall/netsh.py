"""The netsh command lines that add and remove the node's inbound firewall rules (pure).

One rule per protocol, inbound, allow, on the node's port, scoped to the node's program
when it is known, in every profile, with a stable name::

    nodekeeper storagenode TCP 28967
    nodekeeper storagenode UDP 28967      (QUIC)

Adding is idempotent by delete-then-add: ``delete rule name=... dir=in`` first (it exits
1 with "No rules match the specified criteria." when there is none, so its failure is
ignored), then ``add rule``. Running the pair twice leaves one rule per protocol, and a
rule whose program or port went stale is replaced, not duplicated.

For the MSI (built by wixl, which has no firewall extension): call
:func:`msi_custom_actions` and turn each command into a deferred, not impersonated custom
action with ``Property="NETSH"`` (``netsh.exe``) and ``ExeCommand=<command.arguments>``;
``Return="ignore"`` where ``command.ignore_failure`` is true, ``Return="check"``
otherwise. Install runs ``install`` in order; uninstall runs ``uninstall``. ``port`` and
``program`` may be MSI formatted text (``[NODE_PORT]``, ``[INSTALLDIR]node.exe``): they
are copied into the command lines as they are, for Windows Installer to expand.

`nodekeeper firewall allow` runs the same command lines (the ``command_line`` text, with
netsh.exe's full path), so what the MSI runs and what the CLI runs cannot drift apart.
"""

from __future__ import annotations

import ntpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from nodekeeper.firewall.verdict import PROTOCOLS, Protocol

RULE_PREFIX = "nodekeeper storagenode"
# netsh's names for the Windows Firewall profiles (NET_FW_PROFILE_TYPE2 bits).
PROFILE_NAMES = {1: "domain", 2: "private", 4: "public"}
# An MSI property reference such as [NODE_PORT] (Windows Installer expands it).
_MSI_PROPERTY = re.compile(r"^\[[A-Za-z_][A-Za-z0-9_.]*\]$")
# Characters after which netsh must see a value in quotes.
_NEEDS_QUOTES = re.compile(r"[\s,;=&|<>^()]")


@dataclass(frozen=True)
class NetshCommand:
    """One netsh invocation: ``args`` after ``netsh``; ``ignore_failure`` for a delete
    of a rule that may not exist; ``purpose`` in words, for logs and the MSI's comments."""

    args: tuple[str, ...]
    ignore_failure: bool
    purpose: str

    @property
    def argv(self) -> tuple[str, ...]:
        return ("netsh", *self.args)

    @property
    def arguments(self) -> str:
        """The arguments as Windows command-line text: ``key="value with spaces"``."""
        return " ".join(_quote(arg) for arg in self.args)

    @property
    def command_line(self) -> str:
        return f"netsh {self.arguments}"

    def with_executable(self, netsh: str) -> str:
        """The command line with ``netsh`` replaced by a full path (quoted if needed)."""
        exe = f'"{netsh}"' if " " in netsh else netsh
        return f"{exe} {self.arguments}"


@dataclass(frozen=True)
class MsiFirewallActions:
    """The MSI's deferred custom actions, in the order they must run."""

    install: tuple[NetshCommand, ...]
    uninstall: tuple[NetshCommand, ...]


def rule_name(protocol: Protocol, port: int | str) -> str:
    return f"{RULE_PREFIX} {protocol.upper()} {port}"


def is_own_rule(name: str) -> bool:
    """A rule this module names (any protocol, any port)."""
    return name.startswith(RULE_PREFIX + " ")


def delete_rule(protocol: Protocol, port: int | str) -> NetshCommand:
    name = rule_name(protocol, _port(port))
    return NetshCommand(
        ("advfirewall", "firewall", "delete", "rule", f"name={name}", "dir=in"),
        ignore_failure=True,
        purpose=f"remove the rule {name!r} if it exists",
    )


def add_rule(protocol: Protocol, port: int | str, program: str | None) -> NetshCommand:
    port = _port(port)
    name = rule_name(protocol, port)
    args = [
        "advfirewall",
        "firewall",
        "add",
        "rule",
        f"name={name}",
        "dir=in",
        "action=allow",
        f"protocol={protocol.upper()}",
        f"localport={port}",
    ]
    if program is not None:
        args.append(f"program={_program(program)}")
    args += ["profile=any", "enable=yes"]
    args.append(f"description=Inbound {protocol.upper()} {port} for the storage node (nodekeeper)")
    return NetshCommand(tuple(args), ignore_failure=False, purpose=f"add the rule {name!r}")


def allow_commands(
    port: int | str, program: str | None, protocols: Iterable[Protocol] = PROTOCOLS
) -> list[NetshCommand]:
    """Delete-then-add for each protocol: idempotent, and it re-points a stale rule."""
    commands: list[NetshCommand] = []
    for protocol in protocols:
        commands += [delete_rule(protocol, port), add_rule(protocol, port, program)]
    return commands


def remove_commands(
    port: int | str, protocols: Iterable[Protocol] = PROTOCOLS
) -> list[NetshCommand]:
    return [delete_rule(protocol, port) for protocol in protocols]


def msi_custom_actions(port: int | str, program: str | None) -> MsiFirewallActions:
    """The command lines the MSI runs at install and uninstall (see the module's text).

    ``port``: the node's port, or an MSI property reference such as ``[NODE_PORT]``.
    ``program``: the node program's full path (MSI formatted text allowed), or None for
    a rule on the port alone. Raises ValueError for a port or program netsh would
    misread."""
    return MsiFirewallActions(
        install=tuple(allow_commands(port, program)), uninstall=tuple(remove_commands(port))
    )


def disable_rule(name: str) -> NetshCommand:
    """Turns off a rule that blocks the node (the fix when a block rule wins)."""
    return NetshCommand(
        (
            "advfirewall",
            "firewall",
            "set",
            "rule",
            f"name={_value(name)}",
            "dir=in",
            "new",
            "enable=no",
        ),
        ignore_failure=False,
        purpose=f"disable the blocking rule {name!r}",
    )


def unblock_profile(profile: int) -> NetshCommand:
    """Turns "Block all incoming connections, including those in the list of allowed
    apps" off for one profile, keeping the default inbound block (with exceptions)."""
    name = PROFILE_NAMES[profile]
    return NetshCommand(
        ("advfirewall", "set", f"{name}profile", "firewallpolicy", "blockinbound,allowoutbound"),
        ignore_failure=False,
        purpose=f"let allow rules work again in the {name} profile",
    )


def _port(port: int | str) -> int | str:
    if isinstance(port, bool):
        raise ValueError(f"not a port: {port!r}")
    if isinstance(port, int):
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range 1-65535")
        return port
    if _MSI_PROPERTY.match(port):
        return port
    if port.isdigit():
        return _port(int(port))
    raise ValueError(f"not a port or an MSI property reference like [NODE_PORT]: {port!r}")


def _program(program: str) -> str:
    program = _value(program)
    if not (program.startswith("[") or ntpath.isabs(program) or program.startswith("%")):
        raise ValueError(f"the program must be a full path: {program!r}")
    return program


def _value(text: str) -> str:
    if not text or '"' in text or "\n" in text or "\r" in text:
        raise ValueError(f"netsh cannot take this value: {text!r}")
    return text


def _quote(arg: str) -> str:
    """``key=value`` with the value in double quotes when netsh needs them."""
    key, sep, value = arg.partition("=")
    if sep and _NEEDS_QUOTES.search(value):
        return f'{key}="{value}"'
    return arg
