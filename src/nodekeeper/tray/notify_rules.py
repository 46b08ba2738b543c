"""Which notifications the tray raises, from successive status snapshots and new problems
(pure: state in, notices and the next state out).

Each kind of trouble is a *condition* read from one snapshot: a crash loop, an update
held, the last update failed, the firewall blocking the node's port, the disk nearly
full, the node on hold (stopped by the keeper on purpose, e.g. its storage is gone), the
node offline, the control plane unreachable for long, the keeper itself not answering
for long. New entries of the error index at ERROR or worse are conditions too, one per
source. A condition is told once when it starts, again after ``repeat_seconds`` if it
lasts, and again when it comes back after it cleared, but never twice within
``min_gap_seconds``: a crash loop that flaps gives one notification, not hundreds.

The "sent" times are ``alerts.debounce``'s state (the same rule the keeper's alert
channels follow); what this module adds is which kinds were clear since they were last
told, and since when the keeper or the control plane has not answered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from nodekeeper.alerts.debounce import DebouncePolicy, DebounceState, mark_sent, should_send
from nodekeeper.tray.unread import SEVERITIES, Problem


@dataclass(frozen=True)
class NotifyPolicy:
    # Never the same kind twice within this (a flapping condition).
    min_gap_seconds: float = 300.0
    # A condition that lasts is told again after this.
    repeat_seconds: float = 4 * 3600.0
    # The control plane may be down for a while without the operator having to know.
    control_plane_after_seconds: float = 3600.0
    # The keeper restarting (a self-update) takes seconds; minutes mean it is down.
    keeper_after_seconds: float = 120.0
    # Used bytes over allocated bytes from which the disk counts as nearly full.
    disk_full_fraction: float = 0.9


@dataclass(frozen=True)
class Notice:
    kind: str
    title: str
    message: str


@dataclass(frozen=True)
class NotifyState:
    sent: DebounceState = field(default_factory=DebounceState)
    # Kinds that were clear at some snapshot after they were last told.
    cleared: frozenset[str] = frozenset()
    keeper_down_since: float | None = None


def conditions(
    status: Mapping[str, Any] | None,
    now: float,
    state: NotifyState,
    policy: NotifyPolicy,
) -> dict[str, Notice]:
    """The conditions that hold in ``status`` (None: the keeper did not answer)."""
    found: dict[str, Notice] = {}
    if status is None:
        since = state.keeper_down_since if state.keeper_down_since is not None else now
        if now - since >= policy.keeper_after_seconds:
            found["keeper-unreachable"] = Notice(
                "keeper-unreachable",
                "nodekeeper is not answering",
                f"The keeper service has not answered for {_minutes(now - since)}: the node "
                "is not watched. Start the nodekeeper service (or check its log).",
            )
        return found
    update = status.get("update") or {}
    hold = status.get("hold")
    state_name = str(status.get("state", ""))
    if status.get("crash_loop") or state_name == "crash-loop":
        found["crash-loop"] = Notice(
            "crash-loop",
            "The node keeps crashing",
            f"{status.get('recent_failures', 0)} failures in a short time; the keeper keeps "
            "restarting it. See Problems for the node's last errors.",
        )
    held = update.get("held")
    if held:
        found["update-held"] = Notice(
            "update-held",
            f"Update held on {held.get('version', '?')}",
            str(held.get("message", "")),
        )
    failure = update.get("last_failure")
    latest = update.get("last_outcome") or {}
    fixed = failure and latest.get("outcome") == "committed" and latest.get("at", 0) > failure["at"]
    if failure and not fixed:
        found["update-failed"] = Notice(
            "update-failed", "An update failed", str(failure.get("message", ""))
        )
    last_fw = (status.get("firewall") or {}).get("last") or {}
    if last_fw.get("status") == "blocked":
        fix = " && ".join(last_fw.get("fix") or []) or "nodekeeper firewall allow"
        found["firewall-blocked"] = Notice(
            "firewall-blocked",
            "The firewall blocks the node",
            f"Inbound connections to port {last_fw.get('port', '?')} are blocked, so the "
            f"network cannot reach the node. Fix: {fix}",
        )
    disk = disk_usage(status)
    if disk is not None and disk[1] > 0 and disk[0] / disk[1] >= policy.disk_full_fraction:
        found["disk-full"] = Notice(
            "disk-full",
            "The node's space is nearly full",
            f"{disk[0] / disk[1]:.0%} of the allocated space is used: allocate more (Settings) "
            "or free disk space.",
        )
    if hold:
        found["hold"] = Notice(
            "hold",
            "The node is stopped on purpose",
            f"{hold.get('reason', '')}. {hold.get('fix', '')}".strip(),
        )
    elif state_name == "hung" or (state_name == "stopped" and status.get("next_start_in") is None):
        found["node-offline"] = Notice(
            "node-offline",
            "The node is offline",
            "The node is "
            + ("not answering" if state_name == "hung" else "stopped")
            + ": the network cannot reach it. Restart it from the Status screen.",
        )
    since = update.get("unreachable_since")
    if since is not None and now - since >= policy.control_plane_after_seconds:
        found["control-plane"] = Notice(
            "control-plane",
            "No update server for long",
            f"The update server {update.get('server', '')} has not answered for "
            f"{_minutes(now - since)}: the node gets no updates meanwhile.",
        )
    return found


def problem_conditions(new: Iterable[Problem]) -> dict[str, Notice]:
    """New error-index entries that need the operator (ERROR or worse), one per source:
    the newest one speaks for the rest."""
    found: dict[str, Notice] = {}
    for problem in sorted(new, key=lambda p: p.timestamp):
        if problem.severity < SEVERITIES["ERROR"]:
            continue
        kind = f"problem:{problem.source}"
        message = problem.message + (f" What to do: {problem.fix}" if problem.fix else "")
        found[kind] = Notice(kind, f"{problem.source}: {problem.level.lower()}", message)
    return found


def decide(
    state: NotifyState,
    status: Mapping[str, Any] | None,
    new_problems: Iterable[Problem],
    now: float,
    policy: NotifyPolicy | None = None,
) -> tuple[list[Notice], NotifyState]:
    """The notices to raise now, and the state to pass next time."""
    policy = policy or NotifyPolicy()
    active = {**conditions(status, now, state, policy), **problem_conditions(new_problems)}
    down_since = None if status is not None else (state.keeper_down_since or now)
    sent, cleared = state.sent, set(state.cleared)
    # New problems are events: they hold for this snapshot only, so they are "clear" at
    # the next one without needing a snapshot that says so.
    for kind in sent.last_sent:
        if kind not in active:
            cleared.add(kind)
    notices = []
    for kind, notice in active.items():
        last = sent.last_sent.get(kind)
        if last is not None and now >= last:
            gap = policy.min_gap_seconds if kind in cleared else policy.repeat_seconds
            if not should_send(sent, kind, now, DebouncePolicy(gap)):
                continue
        notices.append(notice)
        sent = mark_sent(sent, kind, now)
        cleared.discard(kind)
    next_state = replace(state, sent=sent, cleared=frozenset(cleared), keeper_down_since=down_since)
    return notices, next_state


def disk_usage(status: Mapping[str, Any]) -> tuple[int, int] | None:
    """(used, allocated) bytes from the node's last pulse, when it says them."""
    data = ((status.get("last_pulse") or {}).get("data")) or {}
    used, allocated = data.get("used_bytes"), data.get("allocated_bytes")
    if isinstance(used, int) and isinstance(allocated, int):
        return used, allocated
    return None


def _minutes(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{minutes // 60} hours"
