"""The keeper's side of the reachability check, its decisions (pure; decision 082): when
to ask again, what a result means, and when becoming unreachable is reported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TCP = ("reachable", "unreachable")
UDP = ("reachable", "no_answer", "unreachable")


@dataclass(frozen=True)
class Asked:
    """One request's end: an HTTP status (None: no answer), the server's Retry-After in
    seconds (already parsed), and the result body of a 200."""

    status: int | None
    retry_after: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


def next_delay(asked: Asked, interval: float, retry: float) -> float:
    """Seconds until the next request. A result: the interval. A 429: what Retry-After
    says (the control plane's rate limit; at least a second), else the retry time. Any
    other failure: Retry-After if given, else the retry time; never sooner than 1 s."""
    if asked.status == 200 and asked.result is not None:
        return interval
    if asked.retry_after is not None:
        return max(1.0, asked.retry_after)
    return max(1.0, retry)


def valid_result(body: Any) -> dict[str, Any] | None:
    """The 200 body if it is a result as the control plane sends it, else None (a proxy's
    page, a different server): nothing unchecked reaches the status or a report."""
    if not isinstance(body, dict):
        return None
    if body.get("tcp") not in TCP or body.get("udp") not in UDP:
        return None
    if not isinstance(body.get("address"), str) or not isinstance(body.get("detail"), str):
        return None
    checked_at = body.get("checked_at")
    if isinstance(checked_at, bool) or not isinstance(checked_at, int | float):
        return None
    return {
        "tcp": body["tcp"],
        "udp": body["udp"],
        "address": body["address"][:320],
        "checked_at": float(checked_at),
        "detail": body["detail"][:2000],
    }


def is_unreachable(result: dict[str, Any] | None) -> bool:
    """Unreachable from outside: TCP failed, or UDP was refused outright. UDP with no
    answer is not: a node that does not speak QUIC never answers the probe."""
    return bool(result) and (result["tcp"] == "unreachable" or result["udp"] == "unreachable")


def becomes_unreachable(previous: dict[str, Any] | None, result: dict[str, Any]) -> bool:
    """Whether ``result`` is news to report: unreachable now and not at the last check
    (none yet counts as reachable; the last one survives a restart), so a node that stays
    unreachable for a week is reported once, and again only after it was reachable."""
    return is_unreachable(result) and not is_unreachable(previous)
