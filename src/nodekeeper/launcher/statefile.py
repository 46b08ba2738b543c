"""The launcher's files on disk: whole-or-absent JSON writes and their parsing.

``state.json`` looks like::

    {"format": 1, "current": "1.4.0", "previous": "1.3.2",
     "pending": {"version": "1.5.0", "attempts": 1},
     "failed": ["1.4.1"],
     "outcomes": [{"id": "...", "kind": "rolled_back", "version": "1.4.1",
                   "running": "1.4.0", "reason": "exited", "detail": "...", "at": 1.7e9}]}

``current``/``previous`` null mean the runtime's own keeper. Every write goes to a temp
file in the same directory, is fsynced, renamed over the old file with ``os.replace``
(atomic on POSIX and NTFS) and the directory fsynced, so a kill -9 or power cut at any
instant leaves the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .decide import Outcome, Pending, State
from .protocol import DELIVERED_FILE, FORMAT, HANDBACK_FILE, REQUEST_FILE, STATE_FILE


class StateFileError(ValueError):
    """A file that exists but is not one this launcher can read."""


def write_json_atomic(path: Path, data: Any) -> None:
    body = (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename durable. Windows cannot open a directory for fsync; NTFS journals
    the rename itself."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temp_files(directory: Path) -> None:
    """Temp files left by a writer that was killed mid-write; never read, just clutter."""
    for leftover in directory.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def read_json(path: Path) -> Any | None:
    """The parsed file, None if it does not exist; StateFileError if it is not JSON."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateFileError(f"{path} is not JSON: {exc}") from None


# -- state.json ------------------------------------------------------------------------


def state_to_json(state: State) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "current": state.current,
        "previous": state.previous,
        "pending": None
        if state.pending is None
        else {"version": state.pending.version, "attempts": state.pending.attempts},
        "failed": list(state.failed),
        "outcomes": [
            {
                "id": o.id,
                "kind": o.kind,
                "version": o.version,
                "running": o.running,
                "reason": o.reason,
                "detail": o.detail,
                "at": o.at,
            }
            for o in state.outcomes
        ],
    }


def _opt_str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise StateFileError(f"{STATE_FILE}: {key} must be a version string or null")
    return value


def state_from_json(raw: Any) -> State:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise StateFileError(f"{STATE_FILE}: not a format-{FORMAT} launcher state")
    pending = raw.get("pending")
    if pending is not None:
        if not (
            isinstance(pending, dict)
            and isinstance(pending.get("version"), str)
            and isinstance(pending.get("attempts"), int)
        ):
            raise StateFileError(f"{STATE_FILE}: pending must be {{version, attempts}}")
        pending = Pending(pending["version"], pending["attempts"])
    failed = raw.get("failed", [])
    if not isinstance(failed, list) or not all(isinstance(v, str) for v in failed):
        raise StateFileError(f"{STATE_FILE}: failed must be a list of versions")
    return State(
        current=_opt_str(raw, "current"),
        previous=_opt_str(raw, "previous"),
        pending=pending,
        failed=tuple(failed),
        outcomes=tuple(outcomes_from_json(raw.get("outcomes", []))),
    )


def outcomes_from_json(raw: Any) -> list[Outcome]:
    """Outcome records; a malformed one is skipped rather than costing the whole state."""
    out: list[Outcome] = []
    for item in raw if isinstance(raw, list) else []:
        try:
            out.append(
                Outcome(
                    id=str(item["id"]),
                    kind=item["kind"],
                    version=str(item["version"]),
                    running=None if item.get("running") is None else str(item["running"]),
                    reason=str(item.get("reason", "")),
                    detail=str(item.get("detail", "")),
                    at=float(item.get("at", 0.0)),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return out


def load_state(directory: Path) -> State:
    """The saved state; a fresh one if there is none. StateFileError if it is damaged
    (only a failing disk can do that: every write is atomic)."""
    raw = read_json(directory / STATE_FILE)
    return State() if raw is None else state_from_json(raw)


def save_state(directory: Path, state: State) -> None:
    write_json_atomic(directory / STATE_FILE, state_to_json(state))


def set_aside_damaged(directory: Path) -> Path | None:
    """Move a damaged state file out of the way (kept for the operator to look at)."""
    source = directory / STATE_FILE
    target = directory / f"{STATE_FILE}.damaged"
    try:
        os.replace(source, target)
    except OSError:
        return None
    return target


# -- request.json and delivered.json -----------------------------------------------------


def read_request(directory: Path) -> str | None:
    """The version a keeper asked to hand over to, None if there is no usable request."""
    try:
        raw = read_json(directory / REQUEST_FILE)
    except (StateFileError, OSError):
        return None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return None
    version = raw.get("version")
    return version if isinstance(version, str) and version else None


def write_request(directory: Path, version: str, at: float) -> None:
    write_json_atomic(directory / REQUEST_FILE, {"format": FORMAT, "version": version, "at": at})


def remove_request(directory: Path) -> None:
    with contextlib.suppress(OSError):
        (directory / REQUEST_FILE).unlink(missing_ok=True)


def write_handback(directory: Path, pid: int) -> None:
    write_json_atomic(directory / HANDBACK_FILE, {"format": FORMAT, "pid": pid})


def read_handback(directory: Path) -> int | None:
    """The pid of the keeper being stopped as a hand-back, if any."""
    try:
        raw = read_json(directory / HANDBACK_FILE)
    except (StateFileError, OSError):
        return None
    pid = raw.get("pid") if isinstance(raw, dict) else None
    return pid if isinstance(pid, int) else None


def remove_handback(directory: Path) -> None:
    with contextlib.suppress(OSError):
        (directory / HANDBACK_FILE).unlink(missing_ok=True)


def read_delivered(directory: Path) -> frozenset[str]:
    try:
        raw = read_json(directory / DELIVERED_FILE)
    except (StateFileError, OSError):
        return frozenset()
    ids = raw.get("ids") if isinstance(raw, dict) else None
    return frozenset(i for i in ids if isinstance(i, str)) if isinstance(ids, list) else frozenset()


def write_delivered(directory: Path, ids: frozenset[str]) -> None:
    write_json_atomic(directory / DELIVERED_FILE, {"format": FORMAT, "ids": sorted(ids)})
