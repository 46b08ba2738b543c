"""The tray icon's colour and tooltip, from the keeper's status and the unread count (pure).

Four states, as the issue names them, checked in this order because the first that holds
is the one the operator must act on or know about:

- **stopped** (grey): no keeper answers, or the node is stopped for good;
- **attention** (red): the operator must act: needs setup, a crash loop, a hung node, an
  update held or failed, the firewall blocking the port, or unread errors;
- **updating** (blue): an update is between download and commit, or the node is starting,
  stopping, or waiting to be started again after an exit;
- **running** (green): the node runs and nothing waits for the operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["running", "updating", "attention", "stopped"]
COLOURS: dict[str, str] = {
    "running": "#2e7d32",
    "updating": "#1565c0",
    "attention": "#c62828",
    "stopped": "#757575",
}


@dataclass(frozen=True)
class IconState:
    kind: Kind
    tooltip: str
    unread: int = 0  # the badge on the icon (tray.icon_image)

    @property
    def colour(self) -> str:
        return COLOURS[self.kind]


def icon_state(status: dict[str, Any] | None, unread: int) -> IconState:
    if status is None:
        return IconState("stopped", "nodekeeper: the keeper is not answering (service stopped?)")
    state = str(status.get("state", ""))
    version = status.get("version") or "?"
    if state == "stopped" and status.get("next_start_in") is None:
        return IconState("stopped", "nodekeeper: the node is stopped")
    update = status.get("update") or {}
    firewall = ((status.get("firewall") or {}).get("last") or {}).get("status")
    reasons = []
    if state == "needs-setup":
        reasons.append("the node needs setting up")
    if state in ("crash-loop", "hung") or status.get("crash_loop"):
        reasons.append("the node keeps failing" if state != "hung" else "the node hangs")
    if update.get("held"):
        reasons.append("an update is held")
    if firewall == "blocked":
        reasons.append("the firewall blocks the node's port")
    if unread:
        reasons.append(f"{unread} unread problem{'s' if unread != 1 else ''}")
    if reasons:
        return IconState("attention", "nodekeeper: " + "; ".join(reasons), unread)
    if update.get("step"):
        target = update.get("target")
        return IconState("updating", f"nodekeeper: updating{f' to {target}' if target else ''}")
    if state in ("starting", "stopping"):
        return IconState("updating", f"nodekeeper: the node is {state}")
    if state == "stopped":  # with a restart planned (a stop for good returned above)
        return IconState(
            "updating", f"nodekeeper: the node restarts in {status['next_start_in']:.0f} s"
        )
    return IconState("running", f"nodekeeper: node {version} running")
