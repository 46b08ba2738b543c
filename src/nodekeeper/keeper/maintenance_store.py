"""The operator's quiet window and pause, kept in ``<state dir>/maintenance.json``.

Durable (``nodekeeper.durable``), so a keeper restart or an update keeps them. A file
that cannot be read or makes no sense is logged and ignored, never a reason not to
start: the keeper then behaves as if nothing had been set (``[update] quiet_window``
from keeper.toml, no pause) until the operator sets them again.

A ``quiet_window`` key in the file, null included, wins over keeper.toml's default: a
window the operator cleared in the tray stays cleared.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nodekeeper.durable import write_durably
from nodekeeper.updater.maintenance import (
    Maintenance,
    QuietWindow,
    Verdict,
    check_pause,
    format_window,
)

FILE = "maintenance.json"
FORMAT = 1

log = logging.getLogger("nodekeeper.keeper")


def parse_file(data: object, default: QuietWindow | None) -> Maintenance:
    """The file's content (parsed JSON) as settings; ValueError says what is wrong."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"not a format-{FORMAT} maintenance file")
    window = default
    if "quiet_window" in data:
        text = data["quiet_window"]
        if text is not None and not isinstance(text, str):
            raise ValueError("quiet_window is not a string")
        window = QuietWindow.parse(text) if text is not None else None
    paused = data.get("paused_until")
    if paused is not None and (isinstance(paused, bool) or not isinstance(paused, int | float)):
        raise ValueError("paused_until is not a number")
    return Maintenance(window, float(paused) if paused is not None else None)


class MaintenanceStore:
    def __init__(
        self,
        state_dir: Path,
        default_window: QuietWindow | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = state_dir / FILE
        self.default_window = default_window
        self.clock = clock
        self.current = self._load()

    def _load(self) -> Maintenance:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return parse_file(data, self.default_window)
        except FileNotFoundError:
            return Maintenance(self.default_window)
        except (OSError, ValueError) as exc:
            log.warning(
                "ignoring %s (%s): no pause, quiet window from keeper.toml; set them again "
                "with `nodekeeper update pause` / `quiet-window` or the tray",
                self.path,
                exc,
            )
            return Maintenance(self.default_window)

    def set_window(self, text: str | None) -> Maintenance:
        """ValueError for a bad window; OSError when it cannot be saved (then nothing
        changed)."""
        window = QuietWindow.parse(text) if text is not None else None
        return self._save(Maintenance(window, self.current.paused_until))

    def pause(self, until: object) -> Maintenance:
        """Pause until ``until`` (unix seconds) or resume (None); like set_window."""
        return self._save(Maintenance(self.current.window, check_pause(until, self.clock())))

    def _save(self, new: Maintenance) -> Maintenance:
        data = {
            "format": FORMAT,
            "quiet_window": format_window(new.window),
            "paused_until": new.paused_until,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_durably(self.path, json.dumps(data, indent=1).encode() + b"\n")
        self.current = new
        return new

    def verdict(self, below_minimum: bool) -> Verdict:
        """What the node's update cycle asks before it carries out an update."""
        return self.current.verdict(self.clock(), below_minimum)

    def status(self, below_minimum: bool = False) -> dict[str, Any]:
        return self.current.status(self.clock(), below_minimum)
