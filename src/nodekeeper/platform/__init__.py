"""OS-specific process control. ``current_platform()`` picks the module for this OS.

The modules are imported lazily: ``windows.py`` imports pywin32, which does not exist on
Linux, and ``posix.py`` uses ``resource`` and ``fcntl``, which do not exist on Windows.
"""

from __future__ import annotations

import sys
from functools import cache

from nodekeeper.platform.base import (
    LaunchSpec,
    LimitReport,
    Platform,
    ProcessHandle,
    ResourceLimits,
    Usage,
)

__all__ = [
    "LaunchSpec",
    "LimitReport",
    "Platform",
    "ProcessHandle",
    "ResourceLimits",
    "Usage",
    "current_platform",
]


@cache
def current_platform() -> Platform:
    """The :class:`Platform` for the running OS (one shared instance)."""
    if sys.platform == "win32":
        from nodekeeper.platform.windows import WindowsPlatform

        return WindowsPlatform()
    from nodekeeper.platform.posix import PosixPlatform

    return PosixPlatform()
