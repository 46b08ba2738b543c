"""What the firewall check says: per protocol ``allowed``, ``blocked`` (with the fix) or
``unknown`` (with why), and the whole verdict built from the two.

Plain data with a JSON form, so that the keeper's status API, the error index, the CLI
and the Windows probe (a child process) all carry the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["allowed", "blocked", "unknown"]
Protocol = Literal["tcp", "udp"]
PROTOCOLS: tuple[Protocol, ...] = ("tcp", "udp")


@dataclass(frozen=True)
class ProtocolVerdict:
    """One protocol's answer. ``fix`` holds the exact commands that make a ``blocked``
    port allowed (empty otherwise); ``allow_fixes`` says whether `nodekeeper firewall
    allow` carries out that fix (Windows, for a missing or stale rule), so the status can
    point there instead of listing commands."""

    protocol: Protocol
    status: Status
    reason: str
    fix: tuple[str, ...] = ()
    allow_fixes: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "status": self.status,
            "reason": self.reason,
            "fix": list(self.fix),
            "allow_fixes": self.allow_fixes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProtocolVerdict:
        return cls(
            protocol=data["protocol"],
            status=data["status"],
            reason=data["reason"],
            fix=tuple(data.get("fix") or ()),
            allow_fixes=bool(data.get("allow_fixes")),
        )


@dataclass(frozen=True)
class Verdict:
    """The check's answer for the node's port: ``firewall`` names what was read
    ("Windows Firewall", "nftables", "ufw", ...; "" when nothing was), ``fix_note`` how
    to run the fix ("from an elevated prompt", "as root")."""

    port: int | None
    program: str | None
    firewall: str
    protocols: tuple[ProtocolVerdict, ...]
    checked_at: float
    fix_note: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def status(self) -> Status:
        """blocked if any protocol is, else unknown if any is, else allowed."""
        statuses = {p.status for p in self.protocols}
        if "blocked" in statuses:
            return "blocked"
        if "unknown" in statuses or not statuses:
            return "unknown"
        return "allowed"

    def of(self, protocol: Protocol) -> ProtocolVerdict:
        return next(p for p in self.protocols if p.protocol == protocol)

    def fix(self) -> tuple[str, ...]:
        """Every blocked protocol's fix, in order, each command once."""
        return tuple(dict.fromkeys(c for p in self.protocols for c in p.fix))

    def key(self) -> tuple[Any, ...]:
        """What makes two verdicts "the same" for the error index: the statuses and the
        fixes, not the reason's wording or the time."""
        return (self.port, tuple((p.protocol, p.status, p.fix) for p in self.protocols))

    def summary(self) -> str:
        """One line: "TCP allowed, UDP blocked (port 28967, Windows Firewall)"."""
        parts = ", ".join(f"{p.protocol.upper()} {p.status}" for p in self.protocols)
        where = [f"port {self.port}"] if self.port is not None else []
        if self.firewall:
            where.append(self.firewall)
        return f"{parts} ({', '.join(where)})" if where else parts

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "port": self.port,
            "program": self.program,
            "firewall": self.firewall,
            "checked_at": self.checked_at,
            "protocols": {p.protocol: p.as_dict() for p in self.protocols},
            "fix": list(self.fix()),
            "fix_note": self.fix_note,
            "notes": list(self.notes),
            "summary": self.summary(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            port=data.get("port"),
            program=data.get("program"),
            firewall=data.get("firewall") or "",
            protocols=tuple(
                ProtocolVerdict.from_dict(data["protocols"][p])
                for p in PROTOCOLS
                if p in data["protocols"]
            ),
            checked_at=float(data.get("checked_at") or 0.0),
            fix_note=data.get("fix_note") or "",
            notes=tuple(data.get("notes") or ()),
        )


def unknown_verdict(
    why: str,
    *,
    port: int | None,
    program: str | None,
    checked_at: float,
    firewall: str = "",
) -> Verdict:
    """Both protocols unknown for the same reason."""
    return Verdict(
        port=port,
        program=program,
        firewall=firewall,
        protocols=tuple(ProtocolVerdict(p, "unknown", why) for p in PROTOCOLS),
        checked_at=checked_at,
    )
