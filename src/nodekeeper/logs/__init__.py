"""Logs that never fill the disk: rotation by size and day, gzip off the writer's thread,
retention by age, a total cap per directory, and an error index for the tray app."""

from .error_index import ErrorIndex, read_errors_since
from .keeper_logging import (
    RotatingLogHandler,
    enable_windows_event_log,
    setup_keeper_logging,
    windows_event_log_handler,
)
from .levels import level_of_line
from .log import RotatingLog
from .rotating import RotatingFile
from .settings import LogSettings, parse_duration, parse_size

__all__ = [
    "ErrorIndex",
    "LogSettings",
    "RotatingFile",
    "RotatingLog",
    "RotatingLogHandler",
    "enable_windows_event_log",
    "level_of_line",
    "parse_duration",
    "parse_size",
    "read_errors_since",
    "setup_keeper_logging",
    "windows_event_log_handler",
]
