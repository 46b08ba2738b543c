"""Quickstart in a real 80×24 terminal (tmux): the live view fits every frame, shows the
end, and closing the terminal (tmux kill-server: SIGHUP) leaves nothing running."""

from __future__ import annotations

import itertools
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from tests.quickstart.helpers import INSTALL_SECONDS, tree, wait_all_gone
from tests.support import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]


def _whole(frame: str) -> bool:
    """The frame's last line, the hint, is on screen: nothing below it was cut."""
    return frame.rstrip("\n").splitlines()[-1].startswith("Ctrl-C stops")


def test_live_view_fits_80x24_and_closing_the_terminal_ends_everything(tmp_path):
    # A private server on a socket in tmp_path: nothing shared, nothing left behind.
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock")]
    data_dir = tmp_path / "qs"
    command = shlex.join(
        [sys.executable, "-m", "nodekeeper", "quickstart", "--data-dir", str(data_dir),
         "--listen", f"127.0.0.1:{free_port()}"]
    )  # fmt: skip
    # exec: the pane's process is quickstart itself, as in a terminal's shell `exec`.
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "qs", "-x", "80", "-y", "24", f"exec {command}"],
        check=True,
    )
    frames: list[str] = []
    try:
        pane = int(
            subprocess.run(
                [*tmux, "display-message", "-p", "-t", "qs", "#{pane_pid}"],
                capture_output=True, text=True, check=True,
            ).stdout
        )  # fmt: skip
        deadline = time.monotonic() + INSTALL_SECONDS
        while time.monotonic() < deadline:
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", "qs"], capture_output=True, text=True
            ).stdout
            if screen.startswith("control plane"):
                frames.append(screen)
                # No frame is cut: rich.live ends one taller than the terminal in "...".
                # (A capture may catch a frame half redrawn; it ends mid-line instead.)
                assert screen.rstrip("\n").splitlines()[-1].strip() != "...", screen
                if "\ndone: the node runs" in screen and _whole(screen):
                    break
            time.sleep(0.5)
        (tmp_path / "frames.txt").write_text("\n\f\n".join(frames))
        assert frames and "\ndone: the node runs" in frames[-1], "\n".join(frames[-1:])
        started = tree(pane)
        assert len(started) >= 2  # the keeper and the node
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    # Frames that stayed on screen unchanged for a capture interval are whole.
    steady = [a for a, b in itertools.pairwise(frames) if a == b]
    assert steady and all(_whole(frame) for frame in steady)
    last = frames[-1]
    assert "update committed" in last and "events" in last
    (tmp_path / "screen.txt").write_text(last)
    wait_all_gone(started)
