"""The Windows service's registration: its names, and the settings the MSI cannot write.

wixl has no ``ServiceConfig`` element, so the recovery actions, the failure flag and the
pre-shutdown timeout are set here with ChangeServiceConfig2: by the installer's custom
action right after the service is installed (and after every upgrade), and again by the
service at each start, so that a service whose configuration was reset (an admin, a
registry restore) heals itself.

What the actions are is data (``RECOVERY``), what is read back is compared with it in the
tests; pywin32 is imported in the functions, so this module imports on Linux.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

SERVICE_NAME = "nodekeeper"
DISPLAY_NAME = "nodekeeper"
DESCRIPTION = (
    "Keeps the storage node running, updated and within its limits; restarts it when it "
    "crashes or hangs. Status: http://127.0.0.1:7779/status"
)
# ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: the program was not started by the SCM.
NOT_A_SERVICE = 1063
# The launcher's default stop timeout (launcher/settings.py), for wait hints before the
# settings are read.
STOP_SECONDS = 45.0

SC_ACTION_RESTART = 1


@dataclass(frozen=True)
class Recovery:
    """Restart after 1 s, 10 s, then 60 s for every later failure; the count resets after a
    day without one. The failure flag makes a non-zero exit count as a failure, not only a
    crash (the launcher exits non-zero only when it cannot run at all)."""

    restart_delays_ms: tuple[int, ...] = (1_000, 10_000, 60_000)
    reset_seconds: int = 24 * 3600
    failure_flag: bool = True

    def actions(self) -> list[tuple[int, int]]:
        return [(SC_ACTION_RESTART, delay) for delay in self.restart_delays_ms]


RECOVERY = Recovery()


def preshutdown_ms(stop_timeout_seconds: float) -> int:
    """How long Windows waits for the service at shutdown: the keeper's whole stop chain
    plus a margin (Windows' default is 3 minutes on 10/11, 10 s for plain shutdown)."""
    return int((stop_timeout_seconds + 15) * 1000)


def quoted_image_path(image: str) -> str:
    """The service's command line with its program quoted (pure). Windows Installer (Wine's
    at least) writes ``C:\\Program Files\\...\\python.exe -m ...`` unquoted, and an unquoted
    path with spaces makes the SCM try ``C:\\Program.exe`` first: the classic "unquoted
    service path" hole. Unchanged when already quoted or when no ``.exe`` is found."""
    stripped = image.strip()
    if stripped.startswith('"'):
        return image
    end = stripped.lower().find(".exe")
    if end < 0:
        return image
    end += len(".exe")
    program, rest = stripped[:end], stripped[end:]
    return f'"{program}"{rest}' if " " in program else image


def configure(name: str, stop_timeout_seconds: float) -> list[str]:
    """Write the recovery actions, the failure flag and the pre-shutdown timeout, each on
    its own (Wine, and old Windows, refuse some levels and accept others). Returns what
    could not be set, "" when all were; pywintypes.error if the service cannot be opened."""
    import win32service

    levels = (
        (
            "recovery actions",
            win32service.SERVICE_CONFIG_FAILURE_ACTIONS,
            {
                "ResetPeriod": RECOVERY.reset_seconds,
                "RebootMsg": "",
                "Command": "",
                "Actions": RECOVERY.actions(),
            },
        ),
        ("failure flag", win32service.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, RECOVERY.failure_flag),
        (
            "pre-shutdown timeout",
            win32service.SERVICE_CONFIG_PRESHUTDOWN_INFO,
            preshutdown_ms(stop_timeout_seconds),
        ),
    )
    refused = []
    scm = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_CONNECT)
    try:
        access = win32service.SERVICE_CHANGE_CONFIG | win32service.SERVICE_QUERY_CONFIG
        handle = win32service.OpenService(scm, name, access)
        try:
            image = win32service.QueryServiceConfig(handle)[3]
            if quoted_image_path(image) != image:
                unchanged = win32service.SERVICE_NO_CHANGE
                # The dependencies again, not None ("unchanged" on Windows): Wine clears them.
                win32service.ChangeServiceConfig(
                    handle, unchanged, unchanged, unchanged, quoted_image_path(image),
                    None, False, _dependencies(name) or None, None, None, None,
                )  # fmt: skip
            for what, level, value in levels:
                try:
                    win32service.ChangeServiceConfig2(handle, level, value)
                except Exception as exc:  # pywintypes.error: this level is refused here
                    refused.append(f"{what}: {exc}")
        finally:
            win32service.CloseServiceHandle(handle)
    finally:
        win32service.CloseServiceHandle(scm)
    return refused


def configure_quietly(name: str, settings: Any, log: logging.Logger) -> None:
    """``configure`` at the service's start: a failure is logged, never fatal."""
    try:
        refused = configure(name, settings.stop_timeout_seconds)
    except Exception as exc:  # pywintypes.error: the service cannot be opened
        refused = [str(exc)]
    for why in refused:
        log.warning("cannot set the service's %s", why)


def read(name: str) -> dict[str, Any]:
    """The service's configuration as Windows holds it (for tests and `status`)."""
    import win32service

    scm = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_CONNECT)
    try:
        handle = win32service.OpenService(scm, name, win32service.SERVICE_QUERY_CONFIG)
        try:
            config = win32service.QueryServiceConfig(handle)
            found: dict[str, Any] = {
                "start_type": config[1],
                "binary": config[3],
                "dependencies": _dependencies(name),
                "account": config[7],
                "display_name": config[8],
            }
            for key, level in (
                ("failure_actions", win32service.SERVICE_CONFIG_FAILURE_ACTIONS),
                ("failure_flag", win32service.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG),
                ("preshutdown_ms", win32service.SERVICE_CONFIG_PRESHUTDOWN_INFO),
                ("description", win32service.SERVICE_CONFIG_DESCRIPTION),
            ):
                try:
                    found[key] = win32service.QueryServiceConfig2(handle, level)
                except Exception as exc:  # a level this Windows (or Wine) does not know
                    found[key] = {"error": str(exc)}
            return found
        finally:
            win32service.CloseServiceHandle(handle)
    finally:
        win32service.CloseServiceHandle(scm)


def _dependencies(name: str) -> list[str]:
    """DependOnService as the SCM stores it (Wine's QueryServiceConfig returns none)."""
    import winreg

    key = rf"SYSTEM\CurrentControlSet\Services\{name}"
    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key) as handle:
            value, _ = winreg.QueryValueEx(handle, "DependOnService")
    except OSError:
        return []
    return [str(v) for v in value if v]
