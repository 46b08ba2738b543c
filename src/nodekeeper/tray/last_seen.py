""" "Last seen": the time of the newest error the operator has looked at, one file per
user, exactly as the seed says ("saves last reported error timestamp to a file for
knowing if there are unread errors").

The file lives in the user's own state directory (platformdirs: ``%LOCALAPPDATA%`` on
Windows, ``~/.local/state`` on Linux), not beside the keeper's data: every user of the PC
has their own unread count, and the tray app runs as that user, who cannot write under
ProgramData (decision 066). It is written atomically (``durable.write_durably``): a crash
mid-write leaves the old time, never an empty file that would mark everything unread.
A file that is missing or unreadable counts as "nothing seen yet".
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from nodekeeper.durable import write_durably

FILE_NAME = "last-seen.json"
FORMAT = 1


def default_path() -> Path:
    import platformdirs

    return platformdirs.user_state_path("nodekeeper", appauthor=False) / FILE_NAME


def load(path: Path) -> float:
    """The saved time (UNIX seconds), or 0.0 when there is none or it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        value = float(data["last_seen"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def save(path: Path, timestamp: float) -> float:
    """Save ``timestamp`` unless an earlier save went further (another window of the same
    user marked newer errors seen): "seen" only moves forward. Returns what is saved."""
    if not math.isfinite(timestamp) or timestamp < 0:
        raise ValueError(f"last seen must be a time in seconds, not {timestamp!r}")
    kept = max(load(path), timestamp)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": FORMAT, "last_seen": kept})
    write_durably(path, text.encode("utf-8"), 0o600)
    return kept
