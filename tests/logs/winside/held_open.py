"""Runs in the Windows runtime under Wine: rotation while another handle holds the log.

Python's open() on Windows shares read and write but not delete, so while ``held`` is
open, renaming the file fails with a sharing violation (WinError 32), exactly as when an
antivirus or an editor holds a log. Prints ``RESULT {json}`` for the pytest side.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
from pathlib import Path

from nodekeeper.logs import (
    ErrorIndex,
    LogSettings,
    RotatingFile,
    read_errors_since,
    setup_keeper_logging,
)


def line(i: int) -> bytes:
    return b"%06d %s\n" % (i, b"x" * 90)


def all_lines(directory: Path) -> list[bytes]:
    data = b""
    names = sorted(
        (n for n in os.listdir(directory) if n.startswith("node.") and n != "node.log"),
        key=lambda n: int(n.split(".")[2]),
    )
    for name in names:
        raw = (directory / name).read_bytes()
        data += gzip.decompress(raw) if name.endswith(".gz") else raw
    return (data + (directory / "node.log").read_bytes()).splitlines()


def main() -> None:
    directory = Path(sys.argv[1])
    settings = LogSettings(max_file_size="4KiB", total_cap="1MiB")
    f = RotatingFile(directory, "node", ".log", settings)
    f.write(line(0))
    held = open(directory / "node.log", "rb")  # noqa: SIM115 - held on purpose
    winerror = None
    try:
        os.rename(directory / "node.log", directory / "probe.log")
    except PermissionError as exc:
        winerror = exc.winerror
    for i in range(1, 400):
        f.write(line(i))
    archived_while_held = [n for n in os.listdir(directory) if n.startswith("node.2")]
    failures = f.rotation_failures
    size_while_held = (directory / "node.log").stat().st_size
    held.close()
    n = 400
    deadline = time.monotonic() + 20
    while not [n for n in os.listdir(directory) if n.startswith("node.2")]:
        if time.monotonic() > deadline:
            break
        f.write(line(n))
        n += 1
        time.sleep(0.002)
    for i in range(n, n + 300):
        f.write(line(i))
    n += 300
    f.close(timeout=None)

    # The error index while a reader holds it open: the keeper keeps recording.
    index = ErrorIndex(directory, settings)
    reader = open(directory / "errors.jsonl", "rb")  # noqa: SIM115
    for i in range(200):
        index.record("supervisor", "ERROR", f"n={i}")
    reader.close()
    for i in range(200, 300):
        index.record("supervisor", "ERROR", f"n={i}")
    index.close(timeout=None)
    entries = [int(e["message"][2:]) for e in read_errors_since(directory, 0)]

    # The keeper's own log as a service: CRITICAL also goes to the Event Log.
    import logging

    logger = logging.getLogger("nodekeeper.winside")
    logger.propagate = False
    errors = ErrorIndex(directory / "keeper", settings)
    handler = setup_keeper_logging(
        directory / "keeper", settings, errors, logger=logger, windows_event_log=True
    )
    event_handlers = [type(h).__name__ for h in logger.handlers if h is not handler]
    failed: list[str] = []
    for h in logger.handlers:
        h.handleError = lambda record, h=h: failed.append(type(h).__name__)  # type: ignore[method-assign]
    logger.critical("service cannot start: disk gone")
    handler.close()
    errors.close()
    keeper_log = (directory / "keeper" / "keeper.log").read_text()

    got = [int(x.split()[0]) for x in all_lines(directory)]
    result = {
        "winerror": winerror,
        "archived_while_held": archived_while_held,
        "failures_while_held": failures,
        "size_while_held": size_while_held,
        "lines_ok": got == list(range(n)),
        "lines": len(got),
        "written": n,
        "archives_after": len([x for x in os.listdir(directory) if x.startswith("node.2")]),
        "index_ok": entries == list(range(300)),
        "event_handlers": event_handlers,
        "emit_failures": failed,
        "pywin32_loaded": "win32evtlogutil" in sys.modules,
        "keeper_log_has_it": "CRITICAL" in keeper_log and "disk gone" in keeper_log,
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
