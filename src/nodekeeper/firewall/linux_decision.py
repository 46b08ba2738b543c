"""Linux: from the firewall tools' outputs to a verdict per protocol (pure).

Which output decides, best effort (decision 065):

1. ufw, when it says it is active: its rules are the administrator's view;
2. firewalld, when it is running: its default zone;
3. otherwise the kernel's rules: ``nft -j list ruleset`` for every nftables table, with
   the tables iptables-nft made read through ``iptables -S`` instead (nft shows their
   iptables matches only as opaque "xt" expressions); with a legacy iptables, both
   ``iptables -S`` and nft, since a packet passes both. Blocked by any → blocked.

A tool that could not be read (most need root) leaves the verdict unknown with its error,
unless another reader already shows the port blocked.
"""

from __future__ import annotations

from nodekeeper.firewall import linux_commands
from nodekeeper.firewall.linux_rules import (
    Evaluation,
    Packet,
    evaluate,
    nft_tables,
    parse_firewalld,
    parse_iptables,
    parse_nft,
    parse_ufw,
    ufw_active,
)
from nodekeeper.firewall.observations import (
    FIREWALLD,
    FIREWALLD_STATE,
    IPTABLES,
    IPTABLES_VERSION,
    NFT,
    UFW,
    LinuxObservation,
)
from nodekeeper.firewall.target import Target
from nodekeeper.firewall.verdict import PROTOCOLS, Protocol, ProtocolVerdict, Verdict

# The tables iptables-nft makes, in the families an IPv4 packet passes.
IPTABLES_NFT_TABLES = {("ip", "filter")}
NO_TOOL = (
    "no firewall tool was found (nft, iptables, ufw, firewall-cmd), so the rules could not "
    "be read; with no firewall at all, inbound traffic is allowed"
)


def decide_linux(target: Target, obs: LinuxObservation, checked_at: float) -> Verdict:
    assert target.port is not None
    runs = obs.runs
    notes: list[str] = []
    readers, problems = _readers(obs, notes)
    verdicts = []
    for protocol in PROTOCOLS:
        packet = Packet(protocol, target.port)
        verdicts.append(_protocol_verdict(packet, readers, problems, obs.euid, notes))
    if not runs:
        verdicts = [ProtocolVerdict(p, "unknown", NO_TOOL) for p in PROTOCOLS]
    evaluations = [name for name, _ in readers]
    return Verdict(
        port=target.port,
        program=target.program,
        firewall=" + ".join(dict.fromkeys(evaluations)),
        protocols=tuple(verdicts),
        checked_at=checked_at,
        fix_note=linux_commands.FIX_NOTE,
        notes=tuple(notes),
    )


# A reader: the tool's name and how to read its rules for one packet.
_Reader = tuple[str, object]


def _readers(obs: LinuxObservation, notes: list[str]) -> tuple[list[_Reader], list[str]]:
    """Which outputs to read (see the module's text), and what could not be read."""
    runs = obs.runs
    problems: list[str] = []
    ufw = runs.get(UFW)
    if ufw is not None:
        if ufw.ok and ufw_active(ufw.stdout):
            return [("ufw", ufw.stdout)], []
        if ufw.ok:
            notes.append("ufw is installed but inactive")
        else:
            problems.append(f"ufw: {ufw.failure()}")
    state = runs.get(FIREWALLD_STATE)
    zone = runs.get(FIREWALLD)
    if state is not None and state.ok and state.stdout.strip() == "running":
        if zone is not None and zone.ok:
            return [("firewalld", zone.stdout)], []
        return [], [f"firewalld: {zone.failure() if zone else 'its zone was not listed'}"]
    if state is not None and not state.ok and "not running" not in (state.stdout + state.stderr):
        problems.append(f"firewalld: {state.failure()}")
    readers: list[_Reader] = []
    nft, ipt = runs.get(NFT), runs.get(IPTABLES)
    version = runs.get(IPTABLES_VERSION)
    iptables_nft = version is not None and "nf_tables" in (version.stdout + version.stderr)
    if ipt is not None and ipt.ok:
        readers.append(("iptables", ipt.stdout))
    elif ipt is not None:
        problems.append(f"iptables: {ipt.failure()}")
    if nft is not None and nft.ok:
        skip = IPTABLES_NFT_TABLES if (iptables_nft and ipt is not None and ipt.ok) else set()
        try:
            tables = nft_tables(nft.stdout)
        except ValueError as exc:
            problems.append(f"nft: its output is not JSON ({exc})")
        else:
            walked = [t for t in tables if t not in skip and t[0] in ("ip", "inet")]
            if walked or not readers:
                readers.append(("nftables", (nft.stdout, frozenset(skip))))
    elif nft is not None:
        problems.append(f"nft: {nft.failure()}")
    return readers, problems


def _read(name: str, source: object, packet: Packet) -> Evaluation:
    if name == "ufw":
        return evaluate(parse_ufw(str(source), packet))
    if name == "firewalld":
        return evaluate(parse_firewalld(str(source), packet))
    if name == "iptables":
        return evaluate(parse_iptables(str(source), packet))
    text, skip = source  # type: ignore[misc]
    return evaluate(parse_nft(text, packet, skip))


def _protocol_verdict(
    packet: Packet, readers: list[_Reader], problems: list[str], euid: int, notes: list[str]
) -> ProtocolVerdict:
    """One protocol's verdict; what the readers note is added to ``notes`` once."""
    protocol: Protocol = packet.protocol
    what = f"inbound {protocol.upper()} {packet.port}"
    results: list[Evaluation] = []
    for name, source in readers:
        try:
            results.append(_read(name, source, packet))
        except (ValueError, KeyError, TypeError) as exc:
            problems = [*problems, f"{name}: cannot read its output ({exc})"]
    notes.extend(n for r in results for n in r.notes if n not in notes)
    for result in results:
        if result.status == "blocked":
            ending = result.first("drop")
            assert ending is not None
            fix = _fix(result.tool, packet, ending.chain, ending.by_rule)
            if result.tool in ("nftables", "iptables") and linux_commands.PERSISTENCE not in notes:
                notes.append(linux_commands.PERSISTENCE)
            # allow_fixes stays False: `nodekeeper firewall allow` only prints these.
            return ProtocolVerdict(
                protocol, "blocked", f"{result.tool}: {ending.why} drops {what}", tuple(fix)
            )
    if problems:
        why = "could not read the firewall: " + "; ".join(problems)
        if euid != 0:
            why += f" (reading the rules needs root; the check ran as uid {euid})"
        return ProtocolVerdict(protocol, "unknown", why)
    unsure = [r for r in results if r.status == "unknown"]
    if unsure:
        result = unsure[0]
        depends = "; ".join(result.unsure[:3]) or "; ".join(
            e.why for e in result.endings if e.kind == "unknown"
        )
        return ProtocolVerdict(
            protocol, "unknown", f"{result.tool}: whether {what} passes depends on {depends}"
        )
    if not results:
        return ProtocolVerdict(protocol, "unknown", NO_TOOL)
    reasons = []
    for result in results:
        accepts = [e for e in result.endings if e.kind == "accept"]
        if accepts[0].chain:
            reasons.append(f"{result.tool}: {accepts[0].why} accepts {what}")
        else:
            reasons.append(f"{result.tool}: no input filter chain, nothing filters {what}")
    return ProtocolVerdict(protocol, "allowed", "; ".join(reasons))


def _fix(tool: str, packet: Packet, chain: str, by_rule: bool) -> list[str]:
    if tool == "ufw":
        return linux_commands.ufw_allow(packet.protocol, packet.port, before_rules=by_rule)
    return linux_commands.allow_for(tool, packet.protocol, packet.port, chain)
