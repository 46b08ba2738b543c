"""What the probes saw, as plain data: the recorded answers the decision is made from.

Windows values are kept as the COM API returns them (``NET_FW_*`` numbers, the rule's
strings), so a recording from a real machine (``nodekeeper firewall check --json``
prints one) can be fed back to the decision unchanged; every value a call could not
read is None, with the error under ``errors``. Linux observations are the tools' own
outputs. Both have a JSON form: the Windows probe runs as a child process and prints
one, and the tests' recorded answers are such files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# NET_FW_PROFILE_TYPE2
PROFILE_DOMAIN, PROFILE_PRIVATE, PROFILE_PUBLIC = 1, 2, 4
PROFILES = (PROFILE_DOMAIN, PROFILE_PRIVATE, PROFILE_PUBLIC)
PROFILES_ALL = 0x7FFFFFFF
# NET_FW_RULE_DIRECTION, NET_FW_ACTION, NET_FW_IP_PROTOCOL
DIRECTION_IN, DIRECTION_OUT = 1, 2
ACTION_BLOCK, ACTION_ALLOW = 0, 1
PROTOCOL_TCP, PROTOCOL_UDP, PROTOCOL_ANY = 6, 17, 256


@dataclass(frozen=True)
class WindowsProfile:
    """One profile as INetFwPolicy2 answers: FirewallEnabled, DefaultInboundAction
    (NET_FW_ACTION: 0 block, 1 allow) and BlockAllInboundTraffic; None = unread."""

    enabled: bool | None
    default_inbound_action: int | None
    block_all_inbound: bool | None


@dataclass(frozen=True)
class WindowsRule:
    """One INetFwRule, with the fields that decide whether it admits the node."""

    name: str
    enabled: bool
    direction: int
    action: int
    protocol: int
    local_ports: str = "*"
    application: str | None = None
    service: str | None = None
    profiles: int = PROFILES_ALL
    remote_addresses: str = "*"
    local_addresses: str = "*"
    interface_types: str = "All"


@dataclass(frozen=True)
class PortAnswer:
    """INetFwMgr.IsPortAllowed's two out values."""

    allowed: bool
    restricted: bool


@dataclass(frozen=True)
class SecurityProduct:
    """A FirewallProduct of Windows Security Center (root\\SecurityCenter2)."""

    name: str
    product_state: int

    @property
    def enabled(self) -> bool:
        """productState is undocumented; by the common reading its middle byte holds the
        on/off state, 0x10 set = on (0x041000 on, 0x040000 off, 0x061100 on)."""
        return bool(self.product_state & 0x1000)


@dataclass(frozen=True)
class WindowsObservation:
    current_profiles: int | None = None
    profiles: dict[int, WindowsProfile] = field(default_factory=dict)
    rules: tuple[WindowsRule, ...] | None = None
    port_allowed: dict[str, PortAnswer] = field(default_factory=dict)
    products: tuple[SecurityProduct, ...] | None = None
    # INetFwPolicy2.LocalPolicyModifyState: 0 local rules work, 1 group policy overrides
    # them, 2 inbound blocked whatever the rules say.
    local_policy_modify_state: int | None = None
    # The variables rule paths use (%SystemRoot%, %ProgramFiles%, ...), as the probe saw.
    env: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "windows",
            "current_profiles": self.current_profiles,
            "profiles": {
                str(p): {
                    "enabled": s.enabled,
                    "default_inbound_action": s.default_inbound_action,
                    "block_all_inbound": s.block_all_inbound,
                }
                for p, s in sorted(self.profiles.items())
            },
            "rules": None if self.rules is None else [vars(r) for r in self.rules],
            "port_allowed": {k: vars(v) for k, v in sorted(self.port_allowed.items())},
            "products": None
            if self.products is None
            else [{"name": p.name, "product_state": p.product_state} for p in self.products],
            "local_policy_modify_state": self.local_policy_modify_state,
            "env": dict(sorted(self.env.items())),
            "errors": dict(self.errors),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowsObservation:
        rules = data.get("rules")
        products = data.get("products")
        return cls(
            current_profiles=data.get("current_profiles"),
            profiles={
                int(p): WindowsProfile(
                    enabled=s.get("enabled"),
                    default_inbound_action=s.get("default_inbound_action"),
                    block_all_inbound=s.get("block_all_inbound"),
                )
                for p, s in (data.get("profiles") or {}).items()
            },
            rules=None if rules is None else tuple(WindowsRule(**r) for r in rules),
            port_allowed={
                k: PortAnswer(bool(v["allowed"]), bool(v["restricted"]))
                for k, v in (data.get("port_allowed") or {}).items()
            },
            products=None
            if products is None
            else tuple(SecurityProduct(p["name"], int(p["product_state"])) for p in products),
            local_policy_modify_state=data.get("local_policy_modify_state"),
            env=dict(data.get("env") or {}),
            errors=dict(data.get("errors") or {}),
        )


@dataclass(frozen=True)
class ToolRun:
    """One run of a Linux firewall tool: its exit code and output, or ``error`` when it
    could not be run or did not finish in time (then ``returncode`` is None)."""

    argv: tuple[str, ...]
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.error is None

    def failure(self) -> str:
        """Why it gave no answer, in one line."""
        if self.error:
            return self.error
        text = (self.stderr or self.stdout).strip().splitlines()
        return f"`{' '.join(self.argv)}` exited {self.returncode}" + (
            f": {text[-1]}" if text else ""
        )


# Keys of LinuxObservation.runs.
NFT = "nft"  # nft -j list ruleset
IPTABLES = "iptables"  # iptables -S
IPTABLES_VERSION = "iptables-version"  # iptables -V: "(nf_tables)" or "(legacy)"
UFW = "ufw"  # ufw status verbose
FIREWALLD_STATE = "firewalld-state"  # firewall-cmd --state
FIREWALLD = "firewalld"  # firewall-cmd --list-all


@dataclass(frozen=True)
class LinuxObservation:
    """The installed tools' outputs (a tool that is not installed has no run) and the
    effective user id they ran as (most need root to read the rules)."""

    euid: int
    runs: dict[str, ToolRun] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "linux",
            "euid": self.euid,
            "runs": {k: {**vars(v), "argv": list(v.argv)} for k, v in sorted(self.runs.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinuxObservation:
        return cls(
            euid=int(data["euid"]),
            runs={
                k: ToolRun(
                    argv=tuple(v["argv"]),
                    returncode=v.get("returncode"),
                    stdout=v.get("stdout") or "",
                    stderr=v.get("stderr") or "",
                    error=v.get("error"),
                )
                for k, v in (data.get("runs") or {}).items()
            },
        )


Observation = WindowsObservation | LinuxObservation


def observation_from_dict(data: dict[str, Any]) -> Observation:
    if data.get("kind") == "windows":
        return WindowsObservation.from_dict(data)
    if data.get("kind") == "linux":
        return LinuxObservation.from_dict(data)
    raise ValueError(f"not a recorded firewall observation: kind {data.get('kind')!r}")
