"""Platform keys ("os_arch", Go's GOOS/GOARCH names) as releases and URLs use them."""

from __future__ import annotations

import platform
import sys

_OS = {"win32": "windows", "linux": "linux", "darwin": "darwin", "cygwin": "windows"}
_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "i386": "386",
    "i686": "386",
    "x86": "386",
}


def platform_key(sys_platform: str, machine: str) -> str:
    """``platform_key("win32", "AMD64") == "windows_amd64"``."""
    os_name = _OS.get(sys_platform, sys_platform)
    arch = _ARCH.get(machine.lower(), machine.lower())
    return f"{os_name}_{arch}"


def this_platform() -> str:
    return platform_key(sys.platform, platform.machine())
