"""The recorded answers under recorded/, loaded as the probes would hand them over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nodekeeper.firewall.observations import (
    LinuxObservation,
    ToolRun,
    WindowsObservation,
)

HERE = Path(__file__).parent / "recorded"
NODE = "C:\\ProgramData\\nodekeeper\\versions\\storagenode\\1.3.0\\storagenode.exe"
PORT = 28967


def windows(name: str) -> WindowsObservation:
    return WindowsObservation.from_dict(json.loads((HERE / "windows" / f"{name}.json").read_text()))


def windows_raw(name: str) -> dict[str, Any]:
    return json.loads((HERE / "windows" / f"{name}.json").read_text())


def tool(name: str) -> ToolRun:
    """A recorded run (recorded/linux/NAME.json or .txt: a hand-written output)."""
    path = HERE / "linux" / f"{name}.json"
    data = json.loads(path.read_text())
    return ToolRun(tuple(data["argv"]), data["returncode"], data["stdout"], data.get("stderr", ""))


def linux(euid: int = 0, **runs: str) -> LinuxObservation:
    """An observation from recorded runs: ``linux(nft="host-nft", ...)``; keys are the
    observation's (nft, iptables, iptables_version, ufw, firewalld_state, firewalld)."""
    return LinuxObservation(euid, {key.replace("_", "-"): tool(name) for key, name in runs.items()})
