"""The keeper's own log, through the standard ``logging`` module.

Everything the keeper's modules log goes to ``keeper.log`` in the log directory (same
rotation, compression and cap as the node's log); ERROR and above also reach the error
index. When the keeper runs as a Windows service, CRITICAL events go to the Windows
Event Log as well, where an administrator looks first.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from .error_index import ErrorIndex
from .log import RotatingLog
from .settings import LogSettings

KEEPER_LOG_NAME = "keeper"
EVENT_LOG_SOURCE = "nodekeeper"


class RotatingLogHandler(logging.Handler):
    """A ``logging.Handler`` that writes records through a ``RotatingLog``.

    The record's logger name is the source column and its creation time the line's
    time; the formatter only renders the message (with any traceback), because the
    RotatingLog adds time, level and source itself.
    """

    def __init__(self, log: RotatingLog, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.log = log
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            self.log.write(message, record.levelno, record.name, timestamp=record.created)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        self.log.flush()

    def close(self) -> None:
        try:
            self.log.close()
        finally:
            super().close()


def windows_event_log_handler(appname: str = EVENT_LOG_SOURCE) -> logging.Handler | None:
    """A CRITICAL-only handler for the Windows Event Log, or None where there is none.

    The standard library's NTEventLogHandler imports pywin32's win32evtlogutil itself,
    only when constructed, so Linux never needs pywin32; registering the event source
    needs administrator rights, which a service running as LocalSystem has.
    """
    if sys.platform != "win32":
        return None
    import importlib.util

    if importlib.util.find_spec("win32evtlogutil") is None:
        return None
    from logging.handlers import NTEventLogHandler

    handler = NTEventLogHandler(appname)
    handler.setLevel(logging.CRITICAL)
    return handler


def setup_keeper_logging(
    directory: Path,
    settings: LogSettings,
    error_index: ErrorIndex,
    *,
    logger: logging.Logger | None = None,
    level: int = logging.INFO,
    windows_event_log: bool = False,
) -> logging.Handler:
    """Send ``logger`` (the root logger by default) to ``directory/keeper.log`` and
    return the handler (close it on shutdown). ``windows_event_log=True`` (set when
    running as a Windows service) also sends CRITICAL records to the Event Log; it is a
    no-op elsewhere."""
    target = logger if logger is not None else logging.getLogger()
    handler = RotatingLogHandler(
        RotatingLog(Path(directory), KEEPER_LOG_NAME, settings, error_index)
    )
    target.addHandler(handler)
    if target.level == logging.NOTSET or target.level > level:
        target.setLevel(level)
    if windows_event_log:
        enable_windows_event_log(target)
    return handler


def enable_windows_event_log(
    logger: logging.Logger | None = None, appname: str = EVENT_LOG_SOURCE
) -> logging.Handler | None:
    """Add the Event Log handler to ``logger`` (root by default); None if unavailable."""
    handler = windows_event_log_handler(appname)
    if handler is not None:
        (logger if logger is not None else logging.getLogger()).addHandler(handler)
    return handler
