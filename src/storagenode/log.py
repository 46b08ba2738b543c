"""Structured logging: one JSON object per line on stderr.

The keeper captures the node's stderr and reads ``level`` from each line to decide what
goes to its error index, so every line carries at least ``time``, ``level`` and ``msg``.
Extra context goes in as ``logger.info("msg", extra={"fields": {...}})``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LOGGER_NAME = "storagenode"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc_timestamp(record.created),
            # CRITICAL is folded into ERROR: the keeper knows four levels.
            "level": "ERROR" if record.levelno >= logging.ERROR else record.levelname,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                line.setdefault(key, value)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        # ASCII only: a Windows console or pipe may not take UTF-8, and a log line that
        # cannot be encoded would be lost; JSON escapes keep every character.
        return json.dumps(line, default=str, ensure_ascii=True)


def _utc_timestamp(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def configure(level: str = "INFO") -> logging.Logger:
    """Send the node's log to stderr as JSON lines; idempotent."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(getattr(h, "_storagenode", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLineFormatter())
        handler._storagenode = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)
