"""Windows Firewall: from recorded API answers to a verdict per protocol (pure).

The rules, as Windows Firewall applies them to a new inbound connection on the node's
port, in every active profile (a machine can have several: Wi-Fi public and a VPN on
the domain profile; the node's traffic may come through any of them, so the port must
be open in each):

1. the firewall is off in the profile → allowed there;
2. "Block all incoming connections, including those in the list of allowed apps" →
   blocked (allow rules do not count);
3. an enabled inbound block rule for the port, protocol and the node's program (or any
   program) → blocked: block rules win over allow rules;
4. such an allow rule open to any remote address, local address and interface →
   allowed; one restricted to some addresses or interfaces → blocked from the internet;
5. otherwise the profile's default inbound action (block on every stock Windows).

Then the cross-checks: INetFwMgr.IsPortAllowed (Windows' own evaluator, answered for
the current profile) must agree, or the verdict is unknown with both answers; and a
third-party firewall registered as active in Windows Security Center makes the verdict
unknown with its name, since its rules cannot be read. Whatever could not be read makes
the verdict unknown with the error, never allowed: Wine, for one, answers the legacy
``LocalPolicy.CurrentProfile.FirewallEnabled`` with False although it has no firewall,
so that answer is not used (decision 065).
"""

from __future__ import annotations

import ntpath
import re
from collections.abc import Mapping
from dataclasses import dataclass

from nodekeeper.firewall import netsh
from nodekeeper.firewall.observations import (
    ACTION_ALLOW,
    ACTION_BLOCK,
    DIRECTION_IN,
    PROFILES,
    PROTOCOL_ANY,
    PROTOCOL_TCP,
    PROTOCOL_UDP,
    WindowsObservation,
    WindowsProfile,
    WindowsRule,
)
from nodekeeper.firewall.target import Target
from nodekeeper.firewall.verdict import PROTOCOLS, Protocol, ProtocolVerdict, Status, Verdict

FIREWALL = "Windows Firewall"
FIX_NOTE = "from an elevated prompt (Run as administrator)"
PROTOCOL_NUMBERS: dict[Protocol, int] = {"tcp": PROTOCOL_TCP, "udp": PROTOCOL_UDP}
# NET_FW_MODIFY_STATE
MODIFY_GP_OVERRIDE, MODIFY_INBOUND_BLOCKED = 1, 2
_MICROSOFT = re.compile(r"windows (defender )?firewall", re.I)
_VARIABLE = re.compile(r"%([^%]+)%")


@dataclass(frozen=True)
class _Finding:
    status: Status
    reason: str
    fix: tuple[str, ...] = ()
    allow_fixes: bool = False


def decide_windows(target: Target, obs: WindowsObservation, checked_at: float) -> Verdict:
    """The verdict for ``target`` from what the Windows probe recorded."""
    notes: list[str] = []
    if obs.products is None:
        error = obs.errors.get("security_center", "not available")
        notes.append(f"third-party firewalls could not be checked (Security Center: {error})")
    third = [p.name for p in obs.products or () if p.enabled and not _MICROSOFT.search(p.name)]
    verdicts = []
    for protocol in PROTOCOLS:
        finding = _cross_check(target, obs, protocol, _rules_verdict(target, obs, protocol))
        if third:
            finding = _third_party(third, target, protocol, finding)
        verdicts.append(
            ProtocolVerdict(
                protocol, finding.status, finding.reason, finding.fix, finding.allow_fixes
            )
        )
    return Verdict(
        port=target.port,
        program=target.program,
        firewall=FIREWALL if not third else f"{', '.join(third)} (third-party)",
        protocols=tuple(verdicts),
        checked_at=checked_at,
        fix_note=FIX_NOTE,
        notes=tuple(notes),
    )


# -- the rules -----------------------------------------------------------------------------


def _rules_verdict(target: Target, obs: WindowsObservation, protocol: Protocol) -> _Finding:
    """Steps 1-5 over every active profile (None statuses are unknown)."""
    current = obs.current_profiles
    if current is None:
        return _unread("the active firewall profiles", obs.errors.get("current_profiles"))
    active = [p for p in PROFILES if current & p]
    if not active:
        return _Finding("unknown", f"Windows reports no active firewall profile ({current})")
    findings = []
    for profile in active:
        state = obs.profiles.get(profile)
        findings.append((profile, _profile_verdict(target, obs, protocol, profile, state)))
    blocked = [(p, f) for p, f in findings if f.status == "blocked"]
    if blocked:
        _, first = blocked[0]
        fix = tuple(dict.fromkeys(c for _, f in blocked for c in f.fix))
        return _Finding("blocked", first.reason, fix, all(f.allow_fixes for _, f in blocked))
    unknown = [f for _, f in findings if f.status == "unknown"]
    if unknown:
        return unknown[0]
    return _Finding("allowed", "; ".join(f.reason for _, f in findings))


def _profile_verdict(
    target: Target,
    obs: WindowsObservation,
    protocol: Protocol,
    profile: int,
    state: WindowsProfile | None,
) -> _Finding:
    name = netsh.PROFILE_NAMES[profile]
    if state is None or state.enabled is None:
        return _unread(
            f"whether the firewall is on in the {name} profile",
            obs.errors.get(f"profile_{profile}"),
        )
    if not state.enabled:
        return _Finding("allowed", f"Windows Firewall is off in the {name} profile")
    if state.block_all_inbound or obs.local_policy_modify_state == MODIFY_INBOUND_BLOCKED:
        return _Finding(
            "blocked",
            f"the {name} profile blocks all incoming connections, allowed apps included "
            '("Block all incoming connections" is on)',
            (netsh.unblock_profile(profile).command_line,),
        )
    if state.block_all_inbound is None:
        return _unread(
            f"whether the {name} profile blocks all incoming connections",
            obs.errors.get(f"profile_{profile}"),
        )
    if obs.rules is None:
        return _unread("the firewall rules", obs.errors.get("rules"))
    assert target.port is not None
    port, number = target.port, PROTOCOL_NUMBERS[protocol]
    what = f"inbound {protocol.upper()} {port}"
    candidates = [
        r
        for r in obs.rules
        if r.direction == DIRECTION_IN
        and r.protocol in (number, PROTOCOL_ANY)
        and ports_include(r.local_ports, port)
    ]
    applying, misses, unsure = [], [], []
    for rule in candidates:
        why_not = _not_applying(rule, target, obs.env, profile)
        if why_not is None:
            applying.append(rule)
        elif why_not == "":
            unsure.append(rule)
        elif netsh.is_own_rule(rule.name) or _for_the_node(rule, target, obs.env):
            # Near misses worth saying (other programs' rules are a home PC's noise).
            misses.append(f"{rule.name!r} {why_not}")
    blocks = [r for r in applying if r.action == ACTION_BLOCK]
    if blocks:
        return _Finding(
            "blocked",
            f"the block rule {blocks[0].name!r} matches {what} in the {name} profile "
            "(block rules win over allow rules)",
            tuple(dict.fromkeys(netsh.disable_rule(r.name).command_line for r in blocks)),
        )
    allows = [r for r in applying if r.action == ACTION_ALLOW]
    open_ = [r for r in allows if not _restriction(r)]
    if open_:
        return _Finding(
            "allowed", f"the rule {open_[0].name!r} allows {what} in the {name} profile"
        )
    if unsure:
        return _Finding(
            "unknown",
            f"the node's program is not known (nothing installed yet?), and the rule "
            f"{unsure[0].name!r} for {what} is scoped to a program",
        )
    if state.default_inbound_action == ACTION_ALLOW:
        return _Finding("allowed", f"the default inbound action of the {name} profile is allow")
    if state.default_inbound_action is None:
        return _unread(
            f"the default inbound action of the {name} profile",
            obs.errors.get(f"profile_{profile}"),
        )
    if allows:
        rule = allows[0]
        reason = f"the rule {rule.name!r} allows {what} only {_restriction(rule)}"
    else:
        program = f" for the node's program ({target.program})" if target.program else ""
        reason = (
            f"no enabled inbound rule allows {protocol.upper()} {port}{program} "
            f"in the {name} profile"
        )
        if misses:
            reason += " (" + "; ".join(misses[:3]) + ")"
    if obs.local_policy_modify_state == MODIFY_GP_OVERRIDE:
        reason += "; group policy controls this firewall, so a local rule may have no effect"
    return _allow_fix(target, protocol, reason)


def _not_applying(
    rule: WindowsRule, target: Target, env: Mapping[str, str], profile: int
) -> str | None:
    """None if ``rule`` applies to the node's traffic in ``profile``; "" if that depends
    on a program the caller does not know; else why not, in words."""
    if not rule.enabled:
        return "is disabled"
    if not rule.profiles & profile:
        return f"does not apply to the {netsh.PROFILE_NAMES[profile]} profile"
    if rule.service not in (None, ""):
        return (
            "is for services only" if rule.service == "*" else f"is for the service {rule.service}"
        )
    if rule.application in (None, "", "*", "Any"):
        return None
    if target.program is None:
        return ""
    if same_program(rule.application, target.program, env):
        return None
    return f"is for another program ({rule.application})"


def _for_the_node(rule: WindowsRule, target: Target, env: Mapping[str, str]) -> bool:
    if rule.application in (None, "", "*", "Any"):
        return True
    return target.program is not None and same_program(rule.application, target.program, env)


def _restriction(rule: WindowsRule) -> str:
    """Why an allow rule does not open the port to the internet ("" if it does)."""
    if rule.remote_addresses not in ("*", ""):
        return f"from {rule.remote_addresses}"
    if rule.local_addresses not in ("*", ""):
        return f"to {rule.local_addresses}"
    if rule.interface_types not in ("All", ""):
        return f"on {rule.interface_types} interfaces"
    return ""


# -- cross-checks --------------------------------------------------------------------------


def _cross_check(
    target: Target, obs: WindowsObservation, protocol: Protocol, rules: _Finding
) -> _Finding:
    """IsPortAllowed, Windows' own evaluator, must agree with the rules; where the rules
    could not be read, its answer alone decides."""
    answer = obs.port_allowed.get(protocol)
    if answer is None:
        return rules
    says: Status = "allowed" if answer.allowed and not answer.restricted else "blocked"
    words = (
        "allowed"
        if says == "allowed"
        else "allowed from some addresses only"
        if answer.allowed
        else "not allowed"
    )
    if rules.status == "unknown":
        reason = f"Windows' IsPortAllowed says {words} ({rules.reason})"
        if says == "blocked":
            return _allow_fix(target, protocol, reason)
        return _Finding("allowed", reason)
    if rules.status != says:
        return _Finding(
            "unknown",
            f"the rules say {rules.status} ({rules.reason}), but Windows' IsPortAllowed says "
            f"{words}",
        )
    return rules


def _third_party(names: list[str], target: Target, protocol: Protocol, own: _Finding) -> _Finding:
    program = f" for {target.program}" if target.program else ""
    return _Finding(
        "unknown",
        f"{', '.join(names)} is registered as the active firewall in Windows Security "
        f"Center and its rules cannot be read: allow inbound {protocol.upper()} "
        f"{target.port}{program} in it (Windows Firewall itself: {own.status}, "
        f"{own.reason})",
    )


# -- helpers -------------------------------------------------------------------------------


def _allow_fix(target: Target, protocol: Protocol, reason: str) -> _Finding:
    assert target.port is not None
    commands = netsh.allow_commands(target.port, target.program, (protocol,))
    return _Finding("blocked", reason, tuple(c.command_line for c in commands), allow_fixes=True)


def _unread(what: str, error: str | None) -> _Finding:
    return _Finding("unknown", f"could not read {what}: {error or 'no answer'}")


def ports_include(local_ports: str, port: int) -> bool:
    """Whether a rule's LocalPorts ("*", "28967", "28000-29000", "80,443,28967") covers
    ``port``; keywords such as "RPC" or "IPHTTPS" never do."""
    text = (local_ports or "*").strip()
    if text in ("*", "Any"):
        return True
    for item in text.split(","):
        low, sep, high = item.strip().partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            continue
        if int(low) <= port <= int(high if sep else low):
            return True
    return False


def same_program(rule_path: str, program: str, env: Mapping[str, str]) -> bool:
    """Windows paths compared as Windows does: variables expanded, case and slashes
    folded, ``.`` and ``..`` resolved."""
    return normalise_path(rule_path, env) == normalise_path(program, env)


def normalise_path(path: str, env: Mapping[str, str]) -> str:
    folded = {k.lower(): v for k, v in env.items()}
    expanded = _VARIABLE.sub(lambda m: folded.get(m.group(1).lower(), m.group(0)), path.strip('"'))
    return ntpath.normcase(ntpath.normpath(expanded))
