"""The keeper's own log through the standard logging module."""

from __future__ import annotations

import logging
import subprocess
import sys

from nodekeeper.logs import (
    ErrorIndex,
    LogSettings,
    read_errors_since,
    setup_keeper_logging,
    windows_event_log_handler,
)


def test_keeper_records_reach_the_log_and_errors_the_index(tmp_path):
    settings = LogSettings()
    index = ErrorIndex(tmp_path, settings)
    logger = logging.getLogger("nodekeeper.test.keeper")
    logger.propagate = False
    handler = setup_keeper_logging(tmp_path, settings, index, logger=logger)
    try:
        logger.debug("not at INFO")
        logger.info("checked for updates")
        logger.getChild("updater").error("update to %s failed", "1.2.3")
        try:
            raise RuntimeError("disk full")
        except RuntimeError:
            logger.exception("rolled back")
    finally:
        logger.removeHandler(handler)
        handler.close()
        index.close()
    text = (tmp_path / "keeper.log").read_text()
    lines = text.splitlines()
    assert "not at INFO" not in text
    assert lines[0].split()[1:] == ["INFO", "nodekeeper.test.keeper", "checked", "for", "updates"]
    assert lines[1].split()[1:4] == ["ERROR", "nodekeeper.test.keeper.updater", "update"]
    assert "rolled back" in lines[2]
    # The traceback stays with its entry: continuation lines are indented.
    assert lines[3].startswith("    Traceback") and lines[-1].strip() == "RuntimeError: disk full"
    got = [(e["source"], e["message"].splitlines()[0]) for e in read_errors_since(tmp_path, 0)]
    assert got == [
        ("nodekeeper.test.keeper.updater", "update to 1.2.3 failed"),
        ("nodekeeper.test.keeper", "rolled back"),
    ]


def test_event_log_is_windows_only_and_never_imports_pywin32_elsewhere(tmp_path):
    """On Linux the flag is accepted and does nothing; pywin32 is never imported."""
    code = (
        "import sys, logging, pathlib\n"
        "from nodekeeper.logs import *\n"
        f"d = pathlib.Path({str(tmp_path)!r})\n"
        "s = LogSettings()\n"
        "i = ErrorIndex(d, s)\n"
        "lg = logging.getLogger('k')\n"
        "h = setup_keeper_logging(d, s, i, logger=lg, windows_event_log=True)\n"
        "lg.critical('service cannot start')\n"
        "assert windows_event_log_handler() is None\n"
        "assert enable_windows_event_log(lg) is None\n"
        "assert [type(x).__name__ for x in lg.handlers] == ['RotatingLogHandler']\n"
        "assert not [m for m in sys.modules if m.startswith(('win32', 'pywintypes'))]\n"
        "h.close(); i.close()\n"
    )
    if sys.platform == "win32":  # pragma: no cover - the Windows job runs the real thing
        assert windows_event_log_handler() is not None
        return
    subprocess.run([sys.executable, "-c", code], check=True)
    assert "CRITICAL k service cannot start" in " ".join(
        (tmp_path / "keeper.log").read_text().split()
    )
