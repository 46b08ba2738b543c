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


# Every key a keeper can compute for itself (this_platform() on the systems it runs on):
# the control plane refuses a release for any other key, since no node would ever ask
# for it and the typo ("linux_x86_64", "win_amd64") would only surface as a node that
# never updates.
KNOWN_PLATFORMS: tuple[str, ...] = tuple(
    sorted({f"{os_name}_{arch}" for os_name in _OS.values() for arch in _ARCH.values()})
)


def check_known_platform(key: str) -> str:
    """``key`` if a keeper can ask for it, else ValueError listing the valid keys."""
    if key not in KNOWN_PLATFORMS:
        raise ValueError(f"unknown platform {key!r}; use one of: {', '.join(KNOWN_PLATFORMS)}")
    return key
