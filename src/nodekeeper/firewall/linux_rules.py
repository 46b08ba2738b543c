"""Linux firewall rules, read from the tools' outputs and walked for one packet (pure).

The packet is the one the node must accept: a new IPv4 connection (TCP, or UDP for QUIC)
to the node's port on a local unicast address, from an unknown internet address, on an
interface that is not loopback. Each parser (``nft -j list ruleset``, ``iptables -S``,
``ufw status verbose``, ``firewall-cmd --list-all``) turns the rules into one small
form: chains of rules whose conditions are already answered for that packet, True,
False, or None when the answer depends on something the keeper cannot know (the source
address, an interface name, a named set, an iptables match nft cannot show). The walk
then follows the chains as the kernel would, both ways at each None, and returns every
ending that is possible: accept everywhere → allowed, drop everywhere → blocked, both →
unknown, with the conditions it could not answer.

Best effort by design: IPv6, prerouting and netdev hooks, and rules outside the tool
that manages the firewall are not read (decision 065).
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nodekeeper.firewall.verdict import Protocol

Answer = bool | None
MAX_DEPTH = 32
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17}


@dataclass(frozen=True)
class Packet:
    protocol: Protocol
    port: int


@dataclass(frozen=True)
class Rule:
    """One rule: its conditions (answer, words) and what it does when they all hold:
    accept, drop, return, continue (counting or logging only), unknown (an action the
    walk cannot follow), jump or goto ``target``."""

    conditions: tuple[tuple[Answer, str], ...]
    action: str
    text: str
    target: str | None = None

    @property
    def matches(self) -> Answer:
        answers = [a for a, _ in self.conditions]
        if False in answers:
            return False
        return None if None in answers else True

    def unsure(self) -> list[str]:
        return [words for answer, words in self.conditions if answer is None]


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[Rule, ...]
    policy: str | None = None  # "accept" or "drop" for a base chain


@dataclass(frozen=True)
class Ruleset:
    """``base`` lists the input base chains in the order packets pass them; a packet is
    accepted only if each of them accepts it."""

    tool: str
    chains: dict[str, Chain]
    base: tuple[str, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ending:
    """One way the walk can end: ``kind`` accept, drop or unknown; ``chain`` the base
    chain; ``why`` the rule or policy that decided; ``by_rule`` false for a policy."""

    kind: str
    chain: str
    why: str
    by_rule: bool = True


@dataclass(frozen=True)
class Evaluation:
    tool: str
    endings: tuple[Ending, ...]
    unsure: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        kinds = {e.kind for e in self.endings}
        if kinds == {"accept"}:
            return "allowed"
        if kinds == {"drop"}:
            return "blocked"
        return "unknown"

    def first(self, kind: str) -> Ending | None:
        return next((e for e in self.endings if e.kind == kind), None)


# -- the walk ------------------------------------------------------------------------------

_CONTINUE = Ending("continue", "", "")
_RETURN = Ending("return", "", "")


@dataclass
class _Walk:
    ruleset: Ruleset
    unsure: list[str] = field(default_factory=list)
    memo: dict[tuple[str, int], frozenset[Ending]] = field(default_factory=dict)

    def chain(self, name: str, start: int, depth: int) -> frozenset[Ending]:
        key = (name, start)
        if key not in self.memo:
            self.memo[key] = self._chain(name, start, depth)
        return self.memo[key]

    def _chain(self, name: str, start: int, depth: int) -> frozenset[Ending]:
        chain = self.ruleset.chains.get(name)
        if chain is None:
            return frozenset({Ending("unknown", name, f"the chain {name} is not in the output")})
        for index in range(start, len(chain.rules)):
            rule = chain.rules[index]
            matches = rule.matches
            if matches is False:
                continue
            taken = self._take(rule, depth)
            if matches is None:
                self.unsure.extend(w for w in rule.unsure() if w not in self.unsure)
                taken |= {_CONTINUE}
            if _CONTINUE not in taken:
                return taken
            return (taken - {_CONTINUE}) | self.chain(name, index + 1, depth)
        return frozenset({_RETURN})

    def _take(self, rule: Rule, depth: int) -> frozenset[Ending]:
        if rule.action in ("accept", "drop", "unknown"):
            return frozenset({Ending(rule.action, "", rule.text)})
        if rule.action == "continue":
            return frozenset({_CONTINUE})
        if rule.action == "return":
            return frozenset({_RETURN})
        assert rule.target is not None
        if depth >= MAX_DEPTH:
            return frozenset({Ending("unknown", "", f"jumps nested deeper than {MAX_DEPTH}")})
        inner = self.chain(rule.target, 0, depth + 1)
        if rule.action == "jump" and _RETURN in inner:  # back to the rule after the jump
            inner = (inner - {_RETURN}) | {_CONTINUE}
        return inner


def evaluate(ruleset: Ruleset) -> Evaluation:
    """Every possible ending of the packet's way through the base chains. A base chain
    whose every ending drops decides the whole (the packet never passes it)."""
    walk = _Walk(ruleset)
    if not ruleset.base:
        nothing = Ending("accept", "", "no input filter chain", by_rule=False)
        return Evaluation(ruleset.tool, (nothing,), (), ruleset.notes)
    endings: list[Ending] = []
    per_chain = []
    for name in ruleset.base:
        chain = ruleset.chains[name]
        found = set()
        for ending in walk.chain(name, 0, 0):
            if ending is _RETURN:
                policy = chain.policy or "accept"
                found.add(Ending(policy, name, f"the policy {policy} of {name}", by_rule=False))
            else:
                found.add(Ending(ending.kind, name, ending.why, ending.by_rule))
        per_chain.append(sorted(found, key=_order))
    blocking = [chain for chain in per_chain if {e.kind for e in chain} == {"drop"}]
    endings = blocking[0] if blocking else [e for chain in per_chain for e in chain]
    return Evaluation(ruleset.tool, tuple(endings), tuple(walk.unsure), ruleset.notes)


def _order(ending: Ending) -> tuple[int, str]:
    return ({"drop": 0, "unknown": 1, "accept": 2}.get(ending.kind, 3), ending.why)


# -- shared condition helpers --------------------------------------------------------------


def _protocol_is(name: str | int, packet: Packet) -> bool:
    text = str(name).lower()
    if text in ("all", "0"):
        return True
    return text in (packet.protocol, str(PROTOCOL_NUMBERS[packet.protocol]))


def _ports_include(spec: str, port: int, range_sep: str = ":") -> Answer:
    """ "28967", "7000:7010", "80,443,28967" (iptables, ufw) or with "-" (firewalld)."""
    for item in spec.split(","):
        low, sep, high = item.strip().partition(range_sep)
        if not low.isdigit() or (sep and not high.isdigit()):
            return None  # a service name: not resolved here
        if int(low) <= port <= int(high if sep else low):
            return True
    return False


def _multicast_or_broadcast(text: str) -> bool:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return net.version == 4 and (
        net.subnet_of(ipaddress.IPv4Network("224.0.0.0/4"))
        or net == ipaddress.IPv4Network("255.255.255.255/32")
    )


# -- nftables ------------------------------------------------------------------------------


def parse_nft(text: str, packet: Packet, skip_tables: Iterable[tuple[str, str]] = ()) -> Ruleset:
    """``nft -j list ruleset``. Input base chains of the ip and inet families are
    walked (the packet is IPv4), in priority order; ``skip_tables`` (family, table) are
    left to another reader (iptables-nft's tables, read through ``iptables -S``)."""
    items = json.loads(text).get("nftables", [])
    skip = set(skip_tables)
    chains: dict[str, list[Rule]] = {}
    heads: dict[str, dict[str, Any]] = {}
    for item in items:
        if "chain" in item:
            c = item["chain"]
            key = _nft_key(c["family"], c["table"], c["name"])
            chains.setdefault(key, [])
            heads[key] = c
        elif "rule" in item:
            r = item["rule"]
            key = _nft_key(r["family"], r["table"], r["chain"])
            chains.setdefault(key, []).append(_nft_rule(r, packet))
    base = [
        (int(c.get("prio", 0)) if str(c.get("prio", 0)).lstrip("-").isdigit() else 0, key)
        for key, c in heads.items()
        if c.get("hook") == "input"
        and c.get("type", "filter") == "filter"
        and c["family"] in ("ip", "inet")
        and (c["family"], c["table"]) not in skip
    ]
    built = {}
    for key, rules in chains.items():
        head = heads.get(key) or {}
        policy = head.get("policy", "accept") if head.get("hook") else None
        built[key] = Chain(key, tuple(rules), policy)
    return Ruleset("nftables", built, tuple(k for _, k in sorted(base)))


def _nft_key(family: str, table: str, chain: str) -> str:
    return f"{family} {table} {chain}"


def _nft_rule(rule: dict[str, Any], packet: Packet) -> Rule:
    family, table = rule["family"], rule["table"]
    conditions: list[tuple[Answer, str]] = []
    action, target = "continue", None
    words: list[str] = []
    for expr in rule.get("expr", []):
        ((key, value),) = expr.items()
        if key == "match":
            answer, said = _nft_match(value, packet)
            conditions.append((answer, said))
            words.append(said)
        elif key in ("counter", "log", "mangle", "notrack", "meta", "ct", "quota"):
            continue  # statements that do not decide
        elif key == "limit":
            conditions.append((None, "a rate limit"))
            words.append("limit")
        elif key == "xt":
            name = value.get("name", "?")
            if value.get("type") == "target":
                action = {"LOG": "continue", "NFLOG": "continue", "REJECT": "drop"}.get(
                    name, "unknown"
                )
                words.append(name)
            else:
                conditions.append((None, f"the iptables match {name} (not shown by nft)"))
                words.append(f"xt {name}")
        elif key in ("accept", "drop", "reject", "return", "continue"):
            action = {"reject": "drop"}.get(key, key)
            words.append(key)
        elif key in ("jump", "goto"):
            action, target = key, _nft_key(family, table, value["target"])
            words.append(f"{key} {value['target']}")
        else:  # vmap, queue, and what is new to this reader: not followed
            action = "unknown"
            words.append(key)
    where = f"{family} {table} {rule['chain']}"
    text = f"the rule `{' '.join(words)}` in {where}"
    return Rule(tuple(conditions), action, text, target)


def _nft_match(match: dict[str, Any], packet: Packet) -> tuple[Answer, str]:
    op = match.get("op", "==")
    left, right = match.get("left"), match.get("right")
    said = f"{_nft_words(left)} {op} {_nft_words(right)}"
    answer = _nft_answer(op, left, right, packet)
    return answer, said


def _nft_answer(op: str, left: Any, right: Any, packet: Packet) -> Answer:
    if not isinstance(left, dict):
        return None
    if "payload" in left:
        proto, fld = left["payload"].get("protocol"), left["payload"].get("field")
        if proto in ("tcp", "udp", "th", "udplite", "sctp", "dccp"):
            if proto not in ("th", packet.protocol):
                return False  # the match implies its protocol
            if fld == "dport":
                return _compare(op, packet.port, right)
            return None
        if proto == "ip" and fld == "protocol":
            return _compare(op, packet.protocol, right)
        if proto == "ip" and fld == "daddr":
            # The packet is for a local unicast address: never a multicast one.
            return (op == "!=") if _all_multicast(right) else None
        if proto in ("ip6", "icmp", "icmpv6", "igmp", "arp", "ah", "esp", "comp"):
            return False
        return None
    if "meta" in left:
        key = left["meta"].get("key")
        if key == "l4proto":
            return _compare(op, packet.protocol, right)
        if key == "nfproto":
            return _compare(op, "ipv4", right)
        if key == "protocol":
            return _compare(op, "ip", right)
        if key in ("iifname", "iif") and _only(right, {"lo"}):
            return op == "!="
        if key == "iiftype" and _only(right, {"loopback"}):
            return op == "!="
        return None
    if "ct" in left and left["ct"].get("key") == "state":
        return _compare(op, "new", right)
    if "fib" in left and left["fib"].get("result") == "type":
        return _compare(op, "local", right)
    return None


def _values(right: Any) -> list[Any] | None:
    """The elements a right-hand side stands for; None for a named set (@name)."""
    if isinstance(right, str) and right.startswith("@"):
        return None
    if isinstance(right, dict) and "set" in right:
        out: list[Any] = []
        for element in right["set"]:
            inner = _values(element)
            if inner is None:
                return None
            out += inner
        return out
    if isinstance(right, dict) and "elem" in right:
        return _values(right["elem"].get("val"))
    if isinstance(right, list):
        return list(right)
    return [right]


def _contains(value: Any, right: Any) -> Answer:
    values = _values(right)
    if values is None:
        return None
    return any(_equal(value, element) for element in values)


def _equal(value: Any, element: Any) -> bool:
    """One element of a right-hand side: a value, a range, a prefix (never equal: only
    daddr compares addresses, and only against multicast)."""
    if isinstance(element, dict):
        if "range" in element and isinstance(value, int):
            low, high = element["range"]
            return _int(low) <= value <= _int(high)
        return False
    if str(element).lower() == str(value).lower():
        return True
    if isinstance(value, str) and value in PROTOCOL_NUMBERS:  # l4proto given as a number
        return element == PROTOCOL_NUMBERS[value]
    return isinstance(value, int) and str(element).isdigit() and int(element) == value


def _compare(op: str, value: Any, right: Any) -> Answer:
    if op in ("==", "in"):
        return _contains(value, right)
    if op == "!=":
        found = _contains(value, right)
        return None if found is None else not found
    if op in ("<", ">", "<=", ">=") and isinstance(value, int) and isinstance(right, int):
        return {"<": value < right, ">": value > right, "<=": value <= right, ">=": value >= right}[
            op
        ]
    return None


def _only(right: Any, names: set[str]) -> bool:
    values = _values(right)
    return bool(values) and all(str(v) in names for v in values or ())


def _all_multicast(right: Any) -> bool:
    values = _values(right)
    if not values:
        return False
    for v in values:
        if isinstance(v, dict) and "prefix" in v:
            v = f"{v['prefix']['addr']}/{v['prefix']['len']}"
        if not _multicast_or_broadcast(str(v)):
            return False
    return True


def _int(value: Any) -> int:
    return int(value) if str(value).isdigit() else -1


def _nft_words(value: Any) -> str:
    if isinstance(value, dict):
        if "payload" in value:
            return f"{value['payload'].get('protocol')} {value['payload'].get('field')}"
        if "meta" in value:
            return f"meta {value['meta'].get('key')}"
        if "ct" in value:
            return f"ct {value['ct'].get('key')}"
        if "set" in value:
            return "{" + ", ".join(_nft_words(v) for v in value["set"]) + "}"
        if "range" in value:
            return "-".join(str(v) for v in value["range"])
        if "prefix" in value:
            return f"{value['prefix'].get('addr')}/{value['prefix'].get('len')}"
        return json.dumps(value, sort_keys=True)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def nft_tables(text: str) -> list[tuple[str, str]]:
    """The (family, table) pairs of an ``nft -j list ruleset`` output."""
    return [
        (i["table"]["family"], i["table"]["name"])
        for i in json.loads(text).get("nftables", [])
        if "table" in i
    ]


# -- iptables ------------------------------------------------------------------------------

_IPT_CONTINUE = {
    "LOG",
    "NFLOG",
    "ULOG",
    "AUDIT",
    "MARK",
    "CONNMARK",
    "TCPMSS",
    "NOTRACK",
    "CT",
    "SET",
    "TRACE",
    "CLASSIFY",
    "CONNSECMARK",
    "SECMARK",
}
_FLAGS_WITHOUT_VALUE = {"--syn", "--rsource", "--rcheck", "--update", "--set", "--remove"}


def parse_iptables(text: str, packet: Packet) -> Ruleset:
    """``iptables -S`` (the filter table): policies, chains and rules; INPUT is walked."""
    policies: dict[str, str] = {}
    rules: dict[str, list[Rule]] = {}
    lines = [shlex.split(line) for line in text.splitlines() if line.strip()]
    for words in lines:
        if words[:1] == ["-P"] and len(words) >= 3:
            policies[words[1]] = "accept" if words[2] == "ACCEPT" else "drop"
            rules.setdefault(words[1], [])
        elif words[:1] == ["-N"] and len(words) >= 2:
            rules.setdefault(words[1], [])
    for words in lines:
        if words[:1] == ["-A"] and len(words) >= 2:
            rules.setdefault(words[1], []).append(_iptables_rule(words, packet, rules))
    chains = {name: Chain(name, tuple(r), policies.get(name)) for name, r in rules.items()}
    return Ruleset("iptables", chains, ("INPUT",) if "INPUT" in chains else ())


def _iptables_rule(words: list[str], packet: Packet, chains: dict[str, list[Rule]]) -> Rule:
    conditions: list[tuple[Answer, str]] = []
    action, target = "continue", None
    protocol: str | None = None
    tokens: Iterator[str] = iter(words[2:])
    negate = False
    for token in tokens:
        if token == "!":
            negate = True
            continue
        option = token
        if option in ("-j", "-g"):
            name = next(tokens, "")
            if name == "ACCEPT":
                action = "accept"
            elif name in ("DROP", "REJECT"):
                action = "drop"
            elif name == "RETURN":
                action = "return"
            elif name in _IPT_CONTINUE:
                action = "continue"
            elif name in chains:
                action, target = ("jump" if option == "-j" else "goto"), name
            else:
                action = "unknown"
            break  # the target's own options follow
        value = "" if option in _FLAGS_WITHOUT_VALUE else next(tokens, "")
        answer = _iptables_answer(option, value, packet, protocol)
        if option in ("-p", "--protocol"):
            protocol = value
        if answer == "skip":
            negate = False
            continue
        if negate and answer is not None:
            answer = not answer
        said = f"{'! ' if negate else ''}{option} {value}".strip()
        conditions.append((answer, said))  # type: ignore[arg-type]
        negate = False
    text = f"the rule `{' '.join(words)}`"
    return Rule(tuple(conditions), action, text, target)


def _iptables_answer(option: str, value: str, packet: Packet, protocol: str | None) -> Any:
    if option in ("-m", "--match", "--comment", "-c", "--log-prefix", "--limit-burst"):
        return "skip"
    if option in ("-p", "--protocol"):
        return _protocol_is(value, packet)
    if option in ("--dport", "--destination-port", "--dports", "--destination-ports"):
        return _ports_include(value, packet.port)
    if option == "--ports":
        return True if _ports_include(value, packet.port) else None
    if option in ("--sport", "--source-port", "--sports", "--source-ports"):
        return None
    if option in ("--ctstate", "--state"):
        return "NEW" in value.upper().split(",")
    if option == "--dst-type":
        kinds = set(value.upper().split(","))
        if "LOCAL" in kinds or "UNICAST" in kinds:
            return True
        return False if kinds <= {"BROADCAST", "MULTICAST", "ANYCAST", "BLACKHOLE"} else None
    if option == "--syn":
        return packet.protocol == "tcp"
    if option in ("-i", "--in-interface"):
        return False if value == "lo" else None
    if option in ("-s", "--source"):
        return True if value in ("0.0.0.0/0", "0.0.0.0/0.0.0.0") else None
    if option in ("-d", "--destination"):
        return False if _multicast_or_broadcast(value) else None
    if option in ("--icmp-type",):
        return packet.protocol == "icmp"  # never: the packet is TCP or UDP
    return None  # --limit, --src-type, -o, recent, string, ... : not known here


# -- ufw -----------------------------------------------------------------------------------

_UFW_HEAD = re.compile(r"^Status:\s*(\w+)", re.M)
_UFW_DEFAULT = re.compile(r"^Default:\s*(\w+)\s*\(incoming\)", re.M)


def ufw_active(text: str) -> bool | None:
    """Whether ``ufw status`` says active (None if it is not ufw's output)."""
    found = _UFW_HEAD.search(text)
    return None if found is None else found.group(1).lower() == "active"


def parse_ufw(text: str, packet: Packet) -> Ruleset:
    """``ufw status verbose`` of an active ufw: its rules in order (the first that
    matches decides), then the default incoming policy. IPv6 rules are skipped."""
    default = _UFW_DEFAULT.search(text)
    policy = "accept" if default and default.group(1).lower() == "allow" else "drop"
    notes = () if default else ("ufw did not say its default incoming policy: taken as deny",)
    rules: list[Rule] = []
    seen_header = False
    for line in text.splitlines():
        if line.startswith("--"):
            seen_header = True
            continue
        if not seen_header or not line.strip():
            continue
        line = line.split(" # ", 1)[0].rstrip()
        columns = re.split(r"\s{2,}", line.strip())
        if len(columns) < 3 or "(v6)" in line:
            continue
        to, action, source = columns[0], columns[1].upper(), columns[2]
        if "OUT" in action or "FWD" in action:
            continue
        conditions = _ufw_to(to, packet)
        if source != "Anywhere":
            conditions.append((None, f"from {source}"))
        verb = action.split()[0]
        kind = {"ALLOW": "accept", "DENY": "drop", "REJECT": "drop", "LIMIT": "drop"}.get(
            verb, "unknown"
        )
        text_ = f"the ufw rule `{to} {action} {source}`"
        if verb == "LIMIT":
            text_ += " (LIMIT: 6 connections in 30 s per address, too few for a storage node)"
        rules.append(Rule(tuple(conditions), kind, text_))
    chain = Chain("ufw", tuple(rules), policy)
    return Ruleset("ufw", {"ufw": chain}, ("ufw",), notes)


def _ufw_to(to: str, packet: Packet) -> list[tuple[Answer, str]]:
    words = to.split()
    conditions: list[tuple[Answer, str]] = []
    if "on" in words:
        at = words.index("on")
        conditions.append((None, f"on {' '.join(words[at + 1 :])}"))
        words = words[:at]
    if words and (words[0] == "Anywhere" or _is_address(words[0])):
        if words[0] != "Anywhere":
            conditions.append((None, f"to {words[0]}"))
        words = words[1:]
    if not words:
        return conditions  # any port, any protocol
    spec = " ".join(words)
    ports, _, proto = spec.partition("/")
    if proto and proto != packet.protocol:
        return [(False, f"{spec}")]
    answer = _ports_include(ports, packet.port)
    conditions.append((answer, spec if answer is not None else f"the application profile {spec}"))
    return conditions


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


# -- firewalld -----------------------------------------------------------------------------


def parse_firewalld(text: str, packet: Packet) -> Ruleset:
    """``firewall-cmd --list-all`` (the default zone): its deny rich rules, then what it
    allows (allow rich rules, ports, protocols), then the zone's target. Services are
    not resolved to ports (that takes a call per service)."""
    lines = text.splitlines()
    zone = lines[0].split()[0] if lines and lines[0].strip() else "?"
    fields: dict[str, str] = {}
    rich: list[str] = []
    in_rich = False
    for line in lines[1:]:
        if in_rich and line.startswith(("\t", "        ")) and line.strip().startswith("rule"):
            rich.append(line.strip())
            continue
        key, sep, value = line.strip().partition(":")
        if sep:
            in_rich = key == "rich rules"
            fields[key] = value.strip()
    target = fields.get("target", "default").upper()
    policy = "accept" if target == "ACCEPT" else "drop"
    denies, allows = [], []
    for text_ in rich:
        rule = _rich_rule(text_, packet)
        (denies if rule.action == "drop" else allows).append(rule)
    for item in fields.get("ports", "").split():
        ports, _, proto = item.partition("/")
        answer = False if proto != packet.protocol else _ports_include(ports, packet.port, "-")
        allows.append(
            Rule(((answer, f"port {item}"),), "accept", f"the port {item} of the zone {zone}")
        )
    for proto in fields.get("protocols", "").split():
        allows.append(
            Rule(
                ((_protocol_is(proto, packet), f"protocol {proto}"),),
                "accept",
                f"the protocol {proto} of the zone {zone}",
            )
        )
    notes = []
    services = fields.get("services", "").split()
    if services:
        notes.append(f"the zone's services ({' '.join(services)}) were not resolved to ports")
    chain = Chain(f"zone {zone}", tuple(denies + allows), policy)
    return Ruleset("firewalld", {chain.name: chain}, (chain.name,), tuple(notes))


def _rich_rule(text: str, packet: Packet) -> Rule:
    try:
        words = shlex.split(text)
    except ValueError:
        return Rule(((None, text),), "unknown", f"the rich rule `{text}`")
    values = dict(w.split("=", 1) for w in words if "=" in w)
    conditions: list[tuple[Answer, str]] = []
    if values.get("family") == "ipv6":
        conditions.append((False, "family ipv6"))
    if "source" in words or "destination" in words:
        conditions.append((None, "an address"))
    if "service" in words:
        conditions.append((None, f"the service {values.get('name', '?')}"))
    if "port" in words:
        if values.get("protocol", packet.protocol) != packet.protocol:
            conditions.append((False, f"protocol {values.get('protocol')}"))
        else:
            port = values.get("port", "")
            conditions.append((_ports_include(port, packet.port, "-"), f"port {port}"))
    elif "protocol" in words:
        conditions.append((_protocol_is(values.get("value", ""), packet), "protocol"))
    if "limit" in words:
        conditions.append((None, "a rate limit"))
    action = next(
        (
            {"accept": "accept", "reject": "drop", "drop": "drop"}[w]
            for w in words
            if w in ("accept", "reject", "drop")
        ),
        "continue",
    )
    return Rule(tuple(conditions), action, f"the rich rule `{text}`")
