"""A closed stdout (`nodekeeper status --json | head`) ends the command quietly.

Real child processes writing into real pipes whose reader has gone: no traceback, no
"Exception ignored" at interpreter exit, exit code 141 (128 + SIGPIPE, what a shell
reports for a C tool killed by SIGPIPE in the same place).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nodekeeper.launcher.closed_stdout import EXIT_STDOUT_CLOSED

DEADLINE = 120.0  # seconds; a loaded 2-core machine starts Python slowly

# Far more than a pipe buffer (64 KiB on Linux), so the writer is still writing when the
# reader goes away.
BIG_STATUS = {"state": "running", "padding": ["x" * 1000] * 1000}


class _StatusHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(BIG_STATUS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def keeper_status_url() -> Iterator[str]:
    """A real HTTP server on loopback answering /status like a keeper."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _assert_quiet(stderr: bytes, returncode: int) -> None:
    text = stderr.decode(errors="replace")
    assert "Traceback" not in text, text
    assert "Exception ignored" not in text, text
    assert "BrokenPipeError" not in text, text
    assert returncode == EXIT_STDOUT_CLOSED, text


def test_status_json_piped_into_head(keeper_status_url: str) -> None:
    """The issue's command: the reader takes one line and closes its end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodekeeper", "status", "--json", "--url", keeper_status_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == b"{\n"
        proc.stdout.close()  # what `head -1` does after its line
        stderr = proc.stderr.read()
        proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_quiet(stderr, proc.returncode)


def _run_into_closed_pipe(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run ``python ARGV`` with a stdout pipe whose reader closed before the child
    started, so its first write (or the flush at exit) fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, *argv], stdout=write_end, stderr=subprocess.PIPE, timeout=DEADLINE
        )
    finally:
        os.close(write_end)


def test_storagenode_version_into_a_closed_pipe() -> None:
    result = _run_into_closed_pipe(["-m", "storagenode", "version"])
    _assert_quiet(result.stderr, result.returncode)


def test_storagenode_info_into_a_closed_pipe(tmp_path: Path) -> None:
    config_dir = tmp_path / "node"
    setup = subprocess.run(
        [sys.executable, "-m", "storagenode", "setup", "--config-dir", str(config_dir),
         "--storage-dir", str(tmp_path / "pieces"), "--allocated", "1 MB"],
        capture_output=True,
        timeout=DEADLINE,
    )  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    result = _run_into_closed_pipe(["-m", "storagenode", "info", "--config-dir", str(config_dir)])
    _assert_quiet(result.stderr, result.returncode)


# argparse prints --help and --version itself and ignores an OSError from that write, so
# these end with its own 0, or with 141 when the text waited in the buffer for the flush
# that main() does; never with a traceback or "Exception ignored" at exit.
ARGPARSE_PRINTING = {
    "nodekeeper --help": ["-m", "nodekeeper", "--help"],
    "nodekeeper --version": ["-m", "nodekeeper", "--version"],
    "nodekeeper status --help": ["-m", "nodekeeper", "status", "--help"],
    "storagenode --help": ["-m", "storagenode", "--help"],
    "storagenode --version": ["-m", "storagenode", "--version"],
    "nodekeeper-launcher --help": ["-m", "nodekeeper.launcher", "--help"],
    "python -m nodekeeper.keeper --help": ["-m", "nodekeeper.keeper", "--help"],
}


@pytest.mark.parametrize("argv", list(ARGPARSE_PRINTING.values()), ids=list(ARGPARSE_PRINTING))
def test_help_and_version_into_a_closed_pipe(argv: list[str]) -> None:
    result = _run_into_closed_pipe(argv)
    text = result.stderr.decode(errors="replace")
    assert "Traceback" not in text and "Exception ignored" not in text, text
    assert result.returncode in (0, EXIT_STDOUT_CLOSED), text
