"""The Windows service: the launcher, hosted by the Service Control Manager (decision 066).

The MSI registers ``"<runtime>\\python.exe" -m nodekeeper.service.windows_host --config
<ProgramData>\\nodekeeper\\keeper.toml`` as an automatic-start service, so the launcher →
keeper → node chain starts at boot with nobody logged in. This module is only the glue
between the SCM and :class:`nodekeeper.launcher.run.Launcher`:

- **Start.** The service says START_PENDING (with a checkpoint every few seconds, so the
  SCM keeps waiting) until the keeper's status API answers, and only then RUNNING:
  ``sc start`` and the Services console then mean "the keeper is up". A keeper that
  takes longer than ``RUNNING_AFTER_SECONDS`` is reported RUNNING anyway, with a warning
  in the launcher's log, so that a slow or broken keeper does not keep the SCM waiting:
  the launcher keeps restarting it by design.
- **Stop and pre-shutdown** (a system shutdown or reboot) ask the launcher to stop, which
  stops the keeper, which stops the node gracefully. STOP_PENDING carries a wait hint
  long enough for that chain, renewed while it runs. Pre-shutdown is asked for with its
  own timeout (``windows_config.configure``), since Windows gives plain shutdown only a
  few seconds.
- **Dies with the service.** The launcher holds its keepers in a kill-on-close job, and
  each node shim stops its node when the launcher's process ends (decision 063), so a
  killed service leaves nothing running; its recovery actions bring it back.
- **Logs.** A service has no console: the launcher's log goes to
  ``<data dir>\\logs\\launcher.log`` (rotated at 1 MiB, three kept).

pywin32 is imported at module level: this module only runs on Windows.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import servicemanager
import win32service
import win32serviceutil

from nodekeeper.launcher.cli import build_parser, settings_from_args
from nodekeeper.launcher.health import status_answers
from nodekeeper.launcher.run import Launcher
from nodekeeper.launcher.settings import Settings, SettingsError
from nodekeeper.service import windows_config

# Between START_PENDING checkpoints: the SCM gives up on a service whose checkpoint does
# not advance within its wait hint.
CHECKPOINT_SECONDS = 5.0
START_WAIT_HINT_MS = 30_000
RUNNING_AFTER_SECONDS = 300.0
LOG_BYTES = 1024 * 1024
LOG_BACKUPS = 3

log = logging.getLogger("nodekeeper.launcher")

# The launcher's arguments, parsed before the dispatcher starts (the SCM gives the
# service class no way to take them).
_launcher_args: list[str] = []


class KeeperService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
    _svc_name_ = windows_config.SERVICE_NAME
    _svc_display_name_ = windows_config.DISPLAY_NAME
    _svc_description_ = windows_config.DESCRIPTION

    def __init__(self, args: Sequence[str]) -> None:
        super().__init__(args)
        self.launcher: Launcher | None = None
        self.settings: Settings | None = None
        self.stopping = threading.Event()

    # -- SCM controls --------------------------------------------------------------------

    def GetAcceptedControls(self) -> int:
        accepted: int = super().GetAcceptedControls()
        return accepted | win32service.SERVICE_ACCEPT_PRESHUTDOWN

    def SvcOtherEx(self, control: int, event_type: int, data: object) -> None:
        if control == win32service.SERVICE_CONTROL_PRESHUTDOWN:
            self.SvcStop()

    def SvcShutdown(self) -> None:
        self.SvcStop()

    def SvcStop(self) -> None:
        self.stopping.set()
        self._stop_pending()
        if self.launcher is not None:
            self.launcher.request_stop()

    # -- the run -------------------------------------------------------------------------

    def SvcRun(self) -> None:
        """Instead of pywin32's, which says RUNNING before anything has started."""
        self.ReportServiceStatus(win32service.SERVICE_START_PENDING, waitHint=START_WAIT_HINT_MS)
        try:
            self.settings = settings_from_args(build_parser().parse_args(_launcher_args))
        except (SettingsError, SystemExit) as exc:
            servicemanager.LogErrorMsg(f"nodekeeper: cannot start: {exc}")
            raise
        _log_to_file(self.settings.data_dir / "logs" / "launcher.log")
        windows_config.configure_quietly(self._svc_name_, self.settings, log)
        self.launcher = Launcher(self.settings)
        if self.stopping.is_set():  # a stop that came while starting
            self.launcher.request_stop()
        threading.Thread(target=self._report_running, name="service-start", daemon=True).start()
        try:
            self.launcher.run()
        finally:
            log.info("service stopped")
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)

    def _report_running(self) -> None:
        """START_PENDING with advancing checkpoints until the keeper answers, then RUNNING."""
        settings = self.settings
        assert settings is not None
        started = time.monotonic()
        while not self.stopping.is_set():
            if status_answers(settings.status_host, settings.status_port, 2.0):
                log.info("keeper answers: service running")
                break
            if time.monotonic() - started > RUNNING_AFTER_SECONDS:
                log.warning(
                    "the keeper has not answered in %.0f s; the service says RUNNING anyway "
                    "and the launcher keeps trying",
                    RUNNING_AFTER_SECONDS,
                )
                break
            self.ReportServiceStatus(
                win32service.SERVICE_START_PENDING, waitHint=START_WAIT_HINT_MS
            )
            self.stopping.wait(CHECKPOINT_SECONDS)
        if not self.stopping.is_set():
            self.ReportServiceStatus(win32service.SERVICE_RUNNING)

    def _stop_pending(self) -> None:
        settings = self.settings
        seconds = settings.stop_timeout_seconds if settings else windows_config.STOP_SECONDS
        self.ReportServiceStatus(
            win32service.SERVICE_STOP_PENDING, waitHint=int((seconds + 15) * 1000)
        )


def _log_to_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s launcher %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run as the service (started by the SCM); the arguments are the launcher's."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m nodekeeper.service.windows_host",
        description="The nodekeeper Windows service (started by the Service Control Manager; "
        "installed by the MSI). Takes the launcher's arguments.",
        add_help=False,
    )
    parser.add_argument("-h", "--help", action="store_true")
    if parser.parse_known_args(args)[0].help:
        parser.print_help()
        return 0
    _launcher_args[:] = args
    servicemanager.Initialize(KeeperService._svc_name_, None)
    servicemanager.PrepareToHostSingle(KeeperService)
    try:
        servicemanager.StartServiceCtrlDispatcher()
    except Exception as exc:  # pywintypes.error 1063: not started by the SCM
        if getattr(exc, "winerror", None) == windows_config.NOT_A_SERVICE:
            print(
                "nodekeeper: this is the Windows service's program; it runs only when the "
                "Service Control Manager starts it (sc start nodekeeper). To run the keeper "
                "in a console, use: python -m nodekeeper.launcher --config FILE",
                file=sys.stderr,
            )
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
