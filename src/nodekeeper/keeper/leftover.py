"""Remember the running node's process tree on disk, so that a keeper restarted after
being killed can remove what its predecessor left behind
(docs/decisions/011-keeper-killed-node-dies-with-it.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from nodekeeper.durable import write_durably
from nodekeeper.platform.base import Platform, ProcessHandle

log = logging.getLogger("nodekeeper.keeper")


class TreeRecord:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, handle: ProcessHandle) -> None:
        """Record ``handle``'s identity (never half a record, and it survives a power cut:
        the next keeper must find the tree to kill it)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_durably(self.path, json.dumps(handle.identity()).encode())
        except OSError as exc:
            log.warning("cannot record the node's identity in %s: %s", self.path, exc)

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def remove_leftover(self, platform: Platform) -> int:
        """Kill a tree recorded by an earlier keeper that did not clear its record."""
        try:
            identity: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return 0
        killed = platform.kill_leftover(identity)
        if killed:
            log.warning("killed %d process(es) left by a previous keeper (%s)", killed, identity)
        self.clear()
        return killed
