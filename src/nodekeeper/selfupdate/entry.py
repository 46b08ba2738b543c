"""``python -m nodekeeper.selfupdate.entry``: the keeper as the launcher (or preflight) runs it.

The entry module of a keeper release (``nodekeeper.release`` names it in the manifest)
and of the runtime's own keeper; ``nodekeeper.launched`` is its old name, kept as a
shim. Around ``python -m nodekeeper.keeper`` it adds the three things the self-update needs:

- ``version`` prints ``Version: X.Y.Z`` (the updater's preflight runs it);
- outcome records the launcher left (committed, rolled back, refused) become reports and
  error-index entries before the keeper starts;
- after a hand-over (``nodekeeper.selfupdate.handover.hand_over``) the process exits with
  ``EXIT_SELF_UPDATE`` instead of 0, which tells the launcher to start the new version.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nodekeeper import __version__
from nodekeeper.selfupdate import handover

# The logger keeps the module's old name: log lines read as they did before the move.
log = logging.getLogger("nodekeeper.launched")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["version"]:
        print(f"Version: {__version__}")
        return 0
    link = handover.launcher_link()
    if link is not None:
        deliver_before_start(link, args)
    _windows_break_is_a_stop()
    from nodekeeper.keeper.__main__ import main as keeper_main

    return handover.exit_code(keeper_main(args))


def deliver_before_start(link: handover.LauncherLink, args: list[str]) -> None:
    """Outcomes → the report queue (``DATA_DIR/state/reports``, which the keeper's
    reporter sends) and the error index, before the keeper opens either itself. Never
    stops the keeper from starting: a failure here is logged and the outcomes stay for
    the next start."""
    if not handover.undelivered(link):
        return
    try:
        from nodekeeper.keeper.config import load_config
        from nodekeeper.logs import ErrorIndex

        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--config", type=Path)
        config = load_config(parser.parse_known_args(args)[0].config)
        config.logs_path().mkdir(parents=True, exist_ok=True)
        errors = ErrorIndex(config.logs_path(), config.logs)
        try:
            handover.deliver_outcomes(
                link,
                running_version=__version__,
                report=_queue_report(config.state_path() / "reports"),
                record_error=errors.record,
            )
        finally:
            errors.close()
    except Exception:  # the keeper must start even if reporting cannot
        logging.basicConfig(stream=sys.stderr)
        log.exception("cannot deliver the launcher's outcome records; will retry next start")


def _queue_report(directory: Path) -> handover.ReportFn:
    from nodekeeper.keeper.reports.queue import ReportQueue
    from nodekeeper.keeper.reports.record import make_record
    from nodekeeper.version.reports import new_report_id

    queue = ReportQueue(directory)

    def report(
        kind: Any,
        message: str,
        *,
        process: str,
        version: str,
        target_version: str | None,
        at: float,
        **details: Any,
    ) -> None:
        queue.put(
            make_record(
                kind,
                message,
                process=process,
                version=version,
                target_version=target_version,
                at=at,
                report_id=new_report_id(),
                node_id=None,
                details=details,
            )
        )

    return report


def _windows_break_is_a_stop() -> None:
    """How the launcher stops a keeper on Windows (there is no SIGTERM): it sets the named
    event in ENV_STOP_EVENT, and older launchers send CTRL_BREAK, which Python sees as
    SIGBREAK. Both become the SIGINT the keeper stops on. A no-op elsewhere."""
    if os.name != "nt" or not hasattr(signal, "SIGBREAK"):
        return
    signal.signal(signal.SIGBREAK, lambda *_: signal.raise_signal(signal.SIGINT))
    from nodekeeper.launcher.protocol import ENV_STOP_EVENT

    name = os.environ.get(ENV_STOP_EVENT)
    if name:
        threading.Thread(target=_wait_for_stop_event, args=(name,), daemon=True).start()


def _wait_for_stop_event(name: str) -> None:
    import ctypes

    synchronize = 0x00100000
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32.OpenEventW.restype = ctypes.c_void_p
    handle = kernel32.OpenEventW(synchronize, False, name)
    if not handle:
        log.warning("cannot open the launcher's stop event %s (error %d): only CTRL_BREAK "
                    "can stop this keeper gracefully", name, ctypes.get_last_error())  # type: ignore[attr-defined]  # fmt: skip
        return
    infinite = 0xFFFFFFFF
    kernel32.WaitForSingleObject(ctypes.c_void_p(handle), infinite)
    # Wakes the event loop through its signal wakeup fd, then runs the keeper's stop.
    signal.raise_signal(signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
