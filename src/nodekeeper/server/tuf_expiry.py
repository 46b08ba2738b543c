"""When TUF metadata expires, when it is re-signed, and when to warn (decision 084); pure.

Each role's metadata is signed to expire a fixed period after signing (the contract of
decision 083). The server re-signs the online roles (snapshot, timestamp) once 45 % of
their period has passed, before half of it as the contract says (the timestamp after
10.8 h, the snapshot after 3.15 days), so a server that is down or failing for up to half
a period loses nothing, and the warning (less than half left) comes only when a re-sign
that was due failed, never in the minute before the loop gets to it. The offline roles
(root, targets) are signed by people: the warning comes 30 days ahead, time enough to
gather the root keys' holders.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86_400.0

# The validity of each role's metadata once signed.
PERIODS = {
    "root": 365 * DAY,
    "targets": 90 * DAY,
    "snapshot": 7 * DAY,
    "timestamp": 1 * DAY,
}
ONLINE_ROLES = ("snapshot", "timestamp")
OFFLINE_ROLES = ("root", "targets")
# Offline roles: warn this long before expiry. Online roles: warn when less than half the
# period is left, i.e. when a re-sign that should have happened has not (keys missing, the
# database away, every replica down).
OFFLINE_WARNING = 30 * DAY
RESIGN_AFTER = 0.45  # of the period


@dataclass(frozen=True)
class Expiry:
    role: str
    version: int
    expires: float  # epoch seconds

    def left(self, now: float) -> float:
        return self.expires - now


def resign_due(role: str, expires: float, now: float) -> bool:
    """An online role is re-signed once RESIGN_AFTER of its period has passed since it was
    signed (its expiry is signing time + period)."""
    return expires - now <= PERIODS[role] * (1 - RESIGN_AFTER)


def warning(expiry: Expiry, now: float) -> str | None:
    """What to tell the operator about one role's expiry, or None when all is well."""
    left = expiry.left(now)
    name = f"{expiry.role}.json v{expiry.version}"
    if left <= 0:
        return (
            f"{name} has EXPIRED: keepers with a trusted root refuse every update "
            f"({_fix(expiry.role)})"
        )
    if expiry.role in ONLINE_ROLES:
        if left <= PERIODS[expiry.role] / 2:
            return (
                f"{name} expires in {describe(left)} and was not re-signed: check the server's "
                "log for why (its online keys, `server run --tuf-online-keys DIR`)"
            )
        return None
    if left <= OFFLINE_WARNING:
        return f"{name} expires in {describe(left)}: {_fix(expiry.role)}"
    return None


def _fix(role: str) -> str:
    if role == "root":
        return "sign a new root with `nodekeeper keys sign-root` and upload it"
    if role == "targets":
        return "publish a release with `--targets-key`, or `nodekeeper keys sign-targets`"
    return "the server re-signs it with its online keys (`server run --tuf-online-keys DIR`)"


def describe(seconds: float) -> str:
    """``3 d 4 h``, ``5 h 10 min``, ``40 s``: for people, not for parsing."""
    seconds = max(0.0, seconds)
    if seconds >= DAY:
        return f"{int(seconds // DAY)} d {int(seconds % DAY // 3600)} h"
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min"
    return f"{int(seconds)} s"
