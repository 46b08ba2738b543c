"""Windows Firewall read through COM (pywin32), in a process of its own.

    python -m nodekeeper.firewall.windows_probe --port 28967 [--program C:\\...\\node.exe]

prints one line of JSON: the :class:`WindowsObservation` (``firewall.check`` runs this as
a child process with a deadline, so a COM call that hangs is killed with its process
and the keeper never loads COM). What is read:

- ``HNetCfg.FwPolicy2`` (INetFwPolicy2): CurrentProfileTypes; per profile
  FirewallEnabled, DefaultInboundAction, BlockAllInboundTraffic; LocalPolicyModifyState;
  the Rules, of which only inbound TCP/UDP/any rules covering the port are kept;
- ``HNetCfg.FwMgr`` (INetFwMgr): IsPortAllowed for the program, TCP and UDP;
- WMI ``root\\SecurityCenter2``, ``FirewallProduct``: displayName and productState.

Every call that fails leaves its value None and its error under ``errors`` (HRESULT in
hex, with its name where known); nothing here raises for a COM failure. Under Wine 8 the
objects are created but every FwPolicy2 and IsPortAllowed call answers E_NOTIMPL, the
rules cannot be enumerated and SecurityCenter2 is an invalid namespace
(tests/firewall/recorded/windows/wine.json, recorded by tests/windows/test_firewall_wine.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from nodekeeper.firewall.observations import (
    DIRECTION_IN,
    PROFILES,
    PROTOCOL_ANY,
    PROTOCOL_TCP,
    PROTOCOL_UDP,
    PortAnswer,
    SecurityProduct,
    WindowsObservation,
    WindowsProfile,
    WindowsRule,
)
from nodekeeper.firewall.windows_decision import ports_include

T = TypeVar("T")
NET_FW_IP_VERSION_ANY = 2
ENV_NAMES = (
    "SystemRoot",
    "windir",
    "SystemDrive",
    "ProgramFiles",
    "ProgramFiles(x86)",
    "ProgramW6432",
    "ProgramData",
    "USERPROFILE",
    "LOCALAPPDATA",
    "APPDATA",
)
# HRESULTs worth a name in the verdict's reason.
KNOWN_HRESULTS = {
    0x80004001: "E_NOTIMPL: not implemented",
    0x80070005: "E_ACCESSDENIED: access denied",
    0x80040154: "REGDB_E_CLASSNOTREG: class not registered",
    0x8004100E: "WBEM_E_INVALID_NAMESPACE: no such WMI namespace",
    0x800706BA: "RPC_S_SERVER_UNAVAILABLE: the RPC server is unavailable",
    0x800706D9: "EPT_S_NOT_REGISTERED: the Windows Firewall service is not running",
    0x80020009: "DISP_E_EXCEPTION",
}


def describe_error(exc: BaseException) -> str:
    """A COM error as "0x80020009 DISP_E_EXCEPTION (0x80004001 E_NOTIMPL: ...)", anything
    else as "Type: message"."""
    args = exc.args
    if args and isinstance(args[0], int):
        hr = args[0] & 0xFFFFFFFF
        text = f"0x{hr:08X} {KNOWN_HRESULTS.get(hr) or (args[1] if len(args) > 1 else '')}"
        info = args[2] if len(args) > 2 else None
        if isinstance(info, tuple) and len(info) > 5 and isinstance(info[5], int) and info[5]:
            inner = info[5] & 0xFFFFFFFF
            detail = (
                info[2] if isinstance(info[2], str) and info[2] else KNOWN_HRESULTS.get(inner, "")
            )
            text += f" (0x{inner:08X} {detail})".replace(" )", ")")
        return text.strip()
    return f"{type(exc).__name__}: {exc}"


def _read(errors: dict[str, str], key: str, call: Callable[[], T]) -> T | None:
    try:
        return call()
    except Exception as exc:  # a COM failure of any kind is an answer, not a crash
        errors.setdefault(key, describe_error(exc))
        return None


def observe(port: int, program: str | None) -> WindowsObservation:
    """Everything the decision needs, read now. Never raises for a COM failure."""
    errors: dict[str, str] = {}
    env = {name: os.environ[name] for name in ENV_NAMES if name in os.environ}
    try:
        import pythoncom
        import win32com.client
    except ImportError as exc:
        errors["current_profiles"] = f"pywin32 is not available: {exc}"
        return WindowsObservation(env=env, errors=errors)
    pythoncom.CoInitialize()
    try:
        return _observe(win32com.client, port, program, env, errors)
    finally:
        pythoncom.CoUninitialize()


def _observe(
    client: Any, port: int, program: str | None, env: dict[str, str], errors: dict[str, str]
) -> WindowsObservation:
    policy = _read(errors, "current_profiles", lambda: client.Dispatch("HNetCfg.FwPolicy2"))
    current, modify, rules = None, None, None
    profiles: dict[int, WindowsProfile] = {}
    if policy is not None:
        current = _read(errors, "current_profiles", lambda: int(policy.CurrentProfileTypes))
        for profile in PROFILES:
            key = f"profile_{profile}"
            profiles[profile] = WindowsProfile(
                enabled=_read(errors, key, lambda p=profile: bool(policy.FirewallEnabled(p))),
                default_inbound_action=_read(
                    errors, key, lambda p=profile: int(policy.DefaultInboundAction(p))
                ),
                block_all_inbound=_read(
                    errors, key, lambda p=profile: bool(policy.BlockAllInboundTraffic(p))
                ),
            )
        modify = _read(
            errors, "local_policy_modify_state", lambda: int(policy.LocalPolicyModifyState)
        )
        rules = _read(errors, "rules", lambda: _rules(policy, port, errors))
    else:
        for key in ("rules", *(f"profile_{p}" for p in PROFILES)):
            errors.setdefault(key, errors["current_profiles"])
    return WindowsObservation(
        current_profiles=current,
        profiles=profiles,
        rules=rules,
        port_allowed=_port_allowed(client, port, program, errors),
        products=_read(errors, "security_center", lambda: _products(client)),
        local_policy_modify_state=modify,
        env=env,
        errors=errors,
    )


def _rules(policy: Any, port: int, errors: dict[str, str]) -> tuple[WindowsRule, ...]:
    """The inbound rules that could concern the port (a stock Windows has hundreds)."""
    kept = []
    for com_rule in policy.Rules:
        rule = _read(errors, "rule", lambda r=com_rule: _rule(r))
        if rule is None:
            continue
        if (
            rule.direction == DIRECTION_IN
            and rule.protocol in (PROTOCOL_TCP, PROTOCOL_UDP, PROTOCOL_ANY)
            and ports_include(rule.local_ports, port)
        ):
            kept.append(rule)
    return tuple(kept)


def _rule(r: Any) -> WindowsRule:
    return WindowsRule(
        name=str(r.Name),
        enabled=bool(r.Enabled),
        direction=int(r.Direction),
        action=int(r.Action),
        protocol=int(r.Protocol),
        local_ports=str(r.LocalPorts or "*"),
        application=r.ApplicationName or None,
        service=r.serviceName or None,
        profiles=int(r.Profiles),
        remote_addresses=str(r.RemoteAddresses or "*"),
        local_addresses=str(r.LocalAddresses or "*"),
        interface_types=str(r.InterfaceTypes or "All"),
    )


def _port_allowed(
    client: Any, port: int, program: str | None, errors: dict[str, str]
) -> dict[str, PortAnswer]:
    manager = _read(errors, "is_port_allowed", lambda: client.Dispatch("HNetCfg.FwMgr"))
    answers: dict[str, PortAnswer] = {}
    if manager is None:
        return answers
    for name, number in (("tcp", PROTOCOL_TCP), ("udp", PROTOCOL_UDP)):
        got = _read(
            errors,
            f"is_port_allowed_{name}",
            lambda n=number: manager.IsPortAllowed(program, NET_FW_IP_VERSION_ANY, port, None, n),
        )
        if isinstance(got, tuple) and len(got) == 2:
            answers[name] = PortAnswer(bool(got[0]), bool(got[1]))
        elif got is not None:
            errors[f"is_port_allowed_{name}"] = f"unexpected answer {got!r}"
    return answers


def _products(client: Any) -> tuple[SecurityProduct, ...]:
    center = client.GetObject("winmgmts:\\\\.\\root\\SecurityCenter2")
    found = center.ExecQuery("SELECT displayName, productState FROM FirewallProduct")
    return tuple(SecurityProduct(str(p.displayName), int(p.productState)) for p in found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nodekeeper.firewall.windows_probe")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--program")
    args = parser.parse_args(argv)
    observation = observe(args.port, args.program)
    sys.stdout.write(json.dumps(observation.as_dict()) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
