"""The level of one line a storage node printed, so ERROR lines reach the error index.

Three shapes are known: the reference node's JSON lines (``{"level": "ERROR", ...}``),
Storj's zap console lines (``2024-01-01T00:00:00Z<TAB>ERROR<TAB>piecestore<TAB>...``) and
Go runtime crashes (``panic: ...`` / ``fatal error: ...`` on stderr). Anything else is
unknown text: a warning on stderr (a program writes there when something is off) and
info on stdout.
"""

from __future__ import annotations

import json
import logging
from typing import Literal

Stream = Literal["stdout", "stderr"]

# zap's names (DPANIC, PANIC, FATAL) and Python's, upper-cased before the lookup.
LEVEL_NAMES: dict[str, int] = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "DPANIC": logging.CRITICAL,
    "PANIC": logging.CRITICAL,
    "FATAL": logging.CRITICAL,
    "CRITICAL": logging.CRITICAL,
}
# Go prints these to stderr when the process dies; they are the most important lines
# a node ever writes and carry no level of their own.
_GO_CRASH_PREFIXES = ("panic:", "fatal error:")


def level_of_line(line: str, stream: Stream = "stdout") -> int:
    """The logging level of ``line`` as printed by the node on ``stream``."""
    text = line.lstrip()
    if text.startswith("{"):
        level = _json_level(text)
        if level is not None:
            return level
    elif text[:1].isdigit():
        level = _text_level(text)
        if level is not None:
            return level
    if stream == "stderr":
        if text.startswith(_GO_CRASH_PREFIXES):
            return logging.CRITICAL
        return logging.WARNING
    return logging.INFO


def _json_level(text: str) -> int | None:
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    # zap's production encoder says "level"; its development JSON says "L".
    name = record.get("level", record.get("L"))
    if not isinstance(name, str):
        return None
    return LEVEL_NAMES.get(name.upper())


def _text_level(text: str) -> int | None:
    """Level word right after a timestamp: ``TS<TAB>LEVEL`` or ``DATE TIME LEVEL``."""
    fields = text.split(None, 3)
    for word in fields[1:3]:
        level = LEVEL_NAMES.get(word.upper())
        if level is not None:
            return level
    return None
