"""What the Status screen shows, as (label, text) rows grouped in sections (pure).

The words come from ``keeper.status_view`` where it has them (``status_rows``,
``rollout_sentence``), so ``nodekeeper status`` and the window never say the same thing
two ways; this module picks the rows the window shows and adds what the terminal view
leaves to other lines: the node's disk use, the last update check, the maintenance
window and a hold.
"""

from __future__ import annotations

import time
from typing import Any

from nodekeeper.keeper.status_view import (
    _bytes,
    _when,
    rollout_sentence,
    status_problems,
    status_rows,
)
from nodekeeper.tray.notify_rules import disk_usage

Section = tuple[str, list[tuple[str, str]]]

# status_rows' labels each section takes, in its order.
_NODE = (
    "state",
    "version",
    "uptime",
    "restarts",
    "next start in",
    "last exit",
    "last pulse",
    "from outside",  # the control plane's dial-back (decision 082)
)
_UPDATES = ("installed", "updating", "last update", "decision", "rollout", "next check")
_LIMITS = ("memory", "cpu", "logs", "firewall")


def sections(status: dict[str, Any], now: float | None = None) -> list[Section]:
    now = time.time() if now is None else now
    rows = dict(status_rows(status, now))
    out: list[Section] = []
    attention = attention_rows(status, now)
    if attention:
        out.append(("Needs attention", attention))
    node = [(label, rows[label]) for label in _NODE if label in rows]
    disk = disk_usage(status)
    if disk is not None:
        used, allocated = disk
        share = f" ({used / allocated:.0%})" if allocated else ""
        node.append(("disk", f"{_bytes(used)} used of {_bytes(allocated)} allocated{share}"))
    out.append(("Node", node))
    updates = _update_rows(status, rows, now)
    if updates:
        out.append(("Updates", updates))
    out.append(("Limits and usage", [(label, rows[label]) for label in _LIMITS if label in rows]))
    return out


def attention_rows(status: dict[str, Any], now: float) -> list[tuple[str, str]]:
    """A hold first (the node is stopped until the operator acts), then status_view's
    problems, each one row."""
    found = []
    hold = status.get("hold")
    if hold:
        since = _when(hold["since"], now) if hold.get("since") is not None else "now"
        found.append(
            ("ON HOLD", f"{hold.get('reason', '')} (since {since}). {hold.get('fix', '')}")
        )
    found += [("problem", text) for text in status_problems(status, now)]
    return found


def _update_rows(status: dict[str, Any], rows: dict[str, str], now: float) -> list[tuple[str, str]]:
    update = status.get("update")
    if not update:
        return []
    out = []
    check = update.get("last_check")
    if check and check.get("at") is not None:
        result = "ok" if check.get("ok") else f"failed: {check.get('error', '')}"
        out.append(("last check", f"{_when(check['at'], now)}: {result}"))
    out += [(label, rows[label]) for label in _UPDATES if label in rows]
    decision = update.get("decision") or {}
    if "rollout" not in rows:
        sentence = rollout_sentence(decision) if decision else None
        if sentence:
            out.append(("rollout", sentence))
    maintenance = maintenance_text(status.get("maintenance"), now)
    if maintenance:
        out.append(("maintenance", maintenance))
    return out


def maintenance_text(maintenance: dict[str, Any] | None, now: float) -> str | None:
    """The quiet window, a pause, and whether an update may start now."""
    if not maintenance:
        return None
    parts = []
    window = maintenance.get("quiet_window")
    parts.append(
        f"no updates between {window.replace('-', ' and ')}" if window else "no quiet window"
    )
    until = maintenance.get("paused_until")
    if until is not None and until > now:
        parts.append("paused until " + time.strftime("%Y-%m-%d %H:%M", time.localtime(until)))
    verdict = maintenance.get("verdict") or {}
    if verdict.get("why"):
        allowed = "an update may start now" if verdict.get("allowed") else "no update now"
        parts.append(f"{allowed}: {verdict['why']}")
    return "; ".join(parts)


def check_answer(data: dict[str, Any]) -> tuple[str, bool]:
    """What "Check for updates now" says of the keeper's answer to ``POST /update/check``
    (pure), as one paragraph; False when there was no check or it failed. The words are
    ``nodekeeper update check``'s, with where this node stands in a rollout and without
    its pointers to other commands."""
    if data.get("busy"):
        return (
            f"no check now: an update to {data.get('updating')} is being carried out "
            "(the Status screen shows its step; check again when it is done)",
            False,
        )
    check = data.get("check") or {}
    decision = data.get("decision")
    if not check.get("ok"):
        text = f"the check failed: {check.get('error') or 'no answer'}"
        if decision:
            text += f"; the last decision stands: {decision['reason']}"
        return text, False
    if decision is None:
        return "checked; no decision was made", True
    if decision.get("target"):
        text = f"updating to {decision['target']}: {decision['reason']}"
    else:
        text = f"no update: {decision['reason']}"
    why = rollout_sentence(decision)
    return (f"{text}; {why}" if why else text), True
