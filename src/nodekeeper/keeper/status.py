"""What the supervisor knows about the node right now, as the status API serves it.

Monitoring reads these as fields, not log text
(docs/decisions/031-status-check-now-and-why-not-updated.md):
``healthy_since`` (wall clock), ``consecutive_failures`` and ``restart_delay_seconds``
(the backoff the next crash would get), ``tree_tracking`` (how the node's process tree
is held together: cgroup, job object, or the process-group fallback) and ``logs`` (the
log directory's size against its cap).
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodekeeper.keeper.states import State
from nodekeeper.platform.base import LimitReport

HISTORY = 20


@dataclass
class ExitInfo:
    code: int | None
    # "crash", "hung", "memory" (soft-limit restart), "not-set-up", "stopped" (keeper shutdown)
    # "start-failed" (the program could not be started at all), "switched" (a version
    # switch), "held" (the keeper holds the node stopped: Supervisor.hold)
    reason: str
    at: float  # wall clock
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "reason": self.reason, "at": self.at, "detail": self.detail}


@dataclass
class PulseInfo:
    ok: bool
    at: float
    seconds: float
    detail: str = ""
    data: dict[str, Any] | None = None


@dataclass
class NodeStatus:
    state: State = State.STOPPED
    pid: int | None = None
    started_at: float | None = None  # wall clock of the current run's start
    started_mono: float | None = None
    healthy_since_mono: float | None = None
    restarts: int = 0
    crash_loop: bool = False
    recent_failures: int = 0
    next_start_at: float | None = None  # wall clock, while waiting out a backoff
    last_exit: ExitInfo | None = None
    exits: deque[ExitInfo] = field(default_factory=lambda: deque(maxlen=HISTORY))
    last_pulse: PulseInfo | None = None
    probe_failures: int = 0
    memory_bytes: int | None = None
    memory_kind: str | None = None
    cpu_percent: float | None = None
    processes: int | None = None
    soft_limit_restarts: int = 0
    limits: LimitReport = field(default_factory=LimitReport)
    tree: dict[str, Any] | None = None  # the running tree's identity (ProcessHandle.identity)
    # Whether this keeper took over a node its predecessor left running (decision 063):
    # None (nothing to take over), "adopted", or "restarted: <why it could not be>".
    adoption: str | None = None

    def uptime(self, now_mono: float | None = None) -> float | None:
        if self.started_mono is None:
            return None
        return (time.monotonic() if now_mono is None else now_mono) - self.started_mono

    def record_exit(self, info: ExitInfo) -> None:
        self.last_exit = info
        self.exits.append(info)


def tree_tracking(identity: dict[str, Any] | None) -> str | None:
    """How the node's process tree is tracked, from its handle's identity (pure); None
    while no node runs."""
    if identity is None:
        return None
    if identity.get("cgroup"):
        return "cgroup"
    if identity.get("job"):
        return "job-object"
    return "process-group"  # the fallback: a descendant that calls setsid escapes it


def directory_bytes(path: Path) -> int | None:
    """Bytes in the files of ``path`` and below (None if it cannot be read)."""
    total = 0
    try:
        for root, _dirs, files in os.walk(path):
            for name in files:
                try:
                    total += os.stat(os.path.join(root, name)).st_size
                except OSError:
                    continue  # rotated or deleted while walking
    except OSError:
        return None
    return total if path.is_dir() else None


def as_dict(status: NodeStatus, config_view: dict[str, Any], platform_name: str) -> dict[str, Any]:
    """The JSON the status API serves (and `nodekeeper status --json` prints)."""
    pulse = status.last_pulse
    version = pulse.data.get("version") if pulse and pulse.data else None
    healthy_since = (
        time.time() - (time.monotonic() - status.healthy_since_mono)
        if status.healthy_since_mono is not None
        else None
    )
    return {
        "state": status.state.value,
        "pid": status.pid,
        "version": version,
        "started_at": status.started_at,
        "uptime_seconds": status.uptime(),
        "restarts": status.restarts,
        "crash_loop": status.crash_loop,
        "recent_failures": status.recent_failures,
        "healthy_since": healthy_since,
        "consecutive_failures": config_view.get("consecutive_failures", 0),
        "restart_delay_seconds": config_view.get("restart_delay_seconds"),
        "tree_tracking": tree_tracking(status.tree),
        "adoption": status.adoption,
        "next_start_in": (
            max(0.0, status.next_start_at - time.time()) if status.next_start_at else None
        ),
        "last_exit": status.last_exit.as_dict() if status.last_exit else None,
        "exits": [e.as_dict() for e in status.exits],
        "last_pulse": (
            {
                "ok": pulse.ok,
                "at": pulse.at,
                "seconds": pulse.seconds,
                "detail": pulse.detail,
                "data": pulse.data,
            }
            if pulse
            else None
        ),
        "probe": {"kind": config_view["probe_kind"], "consecutive_failures": status.probe_failures},
        "memory": {
            "bytes": status.memory_bytes,
            "kind": status.memory_kind,
            "soft_limit": config_view["memory_soft"],
            "hard_limit": config_view["memory_hard"],
            "hard_mechanism": status.limits.memory_hard,
            "soft_limit_restarts": status.soft_limit_restarts,
        },
        "cpu": {
            "percent": status.cpu_percent,
            "rate_limit_percent": config_view["cpu_rate_percent"],
            "rate_mechanism": status.limits.cpu_rate,
            "cores": config_view["cpu_cores"],
            "affinity_mechanism": status.limits.affinity,
            "priority": status.limits.priority,
        },
        "processes": status.processes,
        "limit_notes": list(status.limits.notes),
        "logs": config_view.get("logs"),
        "platform": platform_name,
    }
