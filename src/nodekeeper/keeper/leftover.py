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
            # Private: under a node shim the record holds the key that drives the shim.
            write_durably(self.path, json.dumps(handle.identity()).encode(), mode=0o600)
        except OSError as exc:
            log.warning("cannot record the node's identity in %s: %s", self.path, exc)

    def read(self) -> dict[str, Any] | None:
        """The recorded identity, or None when there is none (or it is unreadable)."""
        try:
            identity = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return identity if isinstance(identity, dict) else None

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def remove_leftover(self, platform: Platform) -> int:
        """Kill a tree recorded by an earlier keeper that did not clear its record."""
        identity = self.read()
        if identity is None:
            return 0
        killed = platform.kill_leftover(identity)
        if killed:
            log.warning("killed %d process(es) left by a previous keeper (%s)", killed, identity)
        self.clear()
        return killed
