"""How one entry becomes one line: human-readable text (the default) or a JSON object.

Text lines are ``TIME LEVEL SOURCE MESSAGE`` with an ISO 8601 local time that carries
its UTC offset, so an operator reads their own clock and a support engineer can still
line it up with UTC. A message with line breaks (a traceback) keeps them, indented, so
every line that starts at column 0 starts a new entry.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Literal

LineFormatter = Callable[[float, int, str, str], str]


class LocalTimestamps:
    """ISO 8601 local time with milliseconds; strftime runs once per second, not per line.

    The cache is one tuple replaced atomically, so threads may share an instance.
    """

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, ts: float) -> str:
        second = int(ts // 1)
        cached_second, text = self._cached
        if second != cached_second:
            tm = time.localtime(second)
            offset = time.strftime("%z", tm)
            zone = f"{offset[:3]}:{offset[3:]}" if offset not in ("", "+0000") else "Z"
            # "{}" is where the milliseconds go; the zone follows them.
            text = time.strftime("%Y-%m-%dT%H:%M:%S", tm) + ".{:03d}" + zone
            self._cached = (second, text)
        return text.format(int((ts - second) * 1000))


def level_name(level: int) -> str:
    return logging.getLevelName(level) if level in _KNOWN_LEVELS else f"LEVEL{level}"


_KNOWN_LEVELS = {
    logging.DEBUG,
    logging.INFO,
    logging.WARNING,
    logging.ERROR,
    logging.CRITICAL,
}
_LEVEL_COLUMN = {level: f"{logging.getLevelName(level):<8}" for level in _KNOWN_LEVELS}


def text_formatter() -> LineFormatter:
    stamp = LocalTimestamps()

    def fmt(ts: float, level: int, source: str, message: str) -> str:
        column = _LEVEL_COLUMN.get(level) or f"{level_name(level):<8}"
        if "\n" in message or "\r" in message:
            message = "\n    ".join(message.splitlines())
        return f"{stamp(ts)} {column} {source} {message}\n"

    return fmt


def json_formatter() -> LineFormatter:
    stamp = LocalTimestamps()
    dumps = json.JSONEncoder(ensure_ascii=False).encode

    def fmt(ts: float, level: int, source: str, message: str) -> str:
        record = {"time": stamp(ts), "level": level_name(level), "source": source}
        record["message"] = message
        return dumps(record) + "\n"

    return fmt


def formatter_for(kind: Literal["text", "json"]) -> LineFormatter:
    return text_formatter() if kind == "text" else json_formatter()
