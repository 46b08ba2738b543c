"""Remember the running node's process tree on disk, so that a keeper restarted after
being killed can remove what its predecessor left behind (DESIGN.md, "Keeper supervisor").
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from nodekeeper.platform.base import Platform, ProcessHandle

log = logging.getLogger("nodekeeper.keeper")


class TreeRecord:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, handle: ProcessHandle) -> None:
        """Record ``handle``'s identity (temp file + rename: never half a record)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(handle.identity()))
            os.replace(tmp, self.path)
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
