"""The window's tests: a real X server (Xvfb on a display it picks itself), a real keeper
(`nodekeeper run` with the reference node, as tests/keeper does) and a real error index;
for updates, the updater tests' ``Lab`` (a real control plane and releases, a keeper
with ``[update]``).

Tests that need the X server are skipped with the reason when there is no ``Xvfb``
binary. Tk is driven from the test's thread, which is the Tk thread: ``pump_until``
runs Tk's event loop until a condition holds, with a deadline; ``type_into`` and
``click`` drive widgets with real key and button events, as an operator would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import tkinter as tk
from collections.abc import Callable, Iterator
from pathlib import Path
from tkinter import ttk
from typing import Any

import pytest

from nodekeeper.keeper.config import KeeperConfig, load_config
from nodekeeper.logs import ErrorIndex
from tests.keeper.test_keeper_process import (
    Keeper,
    node_dirs,  # noqa: F401  (a fixture)
    reference_settings,
    wait_status,
    write_config,
)
from tests.nodes import DEV_NODE, NodeSetup
from tests.support import deep_merge, free_port
from tests.updater.lab import Lab

SCREEN = (1280, 1024)
WALLET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(scope="session")
def xdisplay() -> Iterator[str]:
    """A private X server; its display name (":N")."""
    binary = shutil.which("Xvfb")
    if binary is None:
        pytest.skip("no Xvfb binary: the window tests need an X server (apt-get install xvfb)")
    read, write = os.pipe()
    proc = subprocess.Popen(
        [binary, "-displayfd", str(write), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24",
         "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write)
    number = b""
    deadline = time.monotonic() + 30
    with os.fdopen(read, "rb") as pipe:
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            chunk = pipe.read(1)
            if not chunk:
                break
            number += chunk
    if not number.strip().isdigit():
        proc.kill()
        raise AssertionError(f"Xvfb did not say its display number (got {number!r})")
    try:
        yield f":{number.strip().decode()}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def tk_root(xdisplay: str) -> Iterator[tk.Tk]:
    root = tk.Tk(screenName=xdisplay, className="nodekeeper")
    try:
        yield root
    finally:
        try:
            # The app's polls and pumps are scheduled with after: cancel them first, or Tk
            # complains that their commands are gone.
            for pending in root.tk.splitlist(root.tk.call("after", "info")):
                root.after_cancel(pending)
            root.destroy()
        except tk.TclError:
            pass  # the app quit and destroyed it


def pump_until(root: tk.Misc, check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run Tk's event loop until ``check()`` is truthy; its value. Fails at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        root.update()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


# Keysyms of the characters the tests type that are not their own keysym.
KEYSYMS = {
    "@": "at", ":": "colon", "/": "slash", ".": "period", " ": "space", "-": "minus",
    "_": "underscore", ",": "comma",
}  # fmt: skip


def type_into(entry: ttk.Entry, text: str) -> None:
    """Empty ``entry`` (select all, delete) and type ``text`` key by key, with the focus
    on it: the Entry's own key bindings do the inserting."""
    root = entry.winfo_toplevel()
    entry.focus_force()
    root.update()
    entry.select_range(0, "end")
    entry.event_generate("<KeyPress>", keysym="Delete", when="tail")
    for char in text:
        if not (char.isalnum() and char.isascii()) and char not in KEYSYMS:
            raise ValueError(f"type_into: no keysym for {char!r}: add it to KEYSYMS")
        entry.event_generate("<KeyPress>", keysym=KEYSYMS.get(char, char), when="tail")
    root.update()
    assert entry.get() == text, f"typed {text!r}, the entry holds {entry.get()!r}"
    root.focus_force()  # away from the entry, as a click elsewhere would


def click(button: ttk.Button) -> None:
    """Press and release mouse button 1 over ``button``: its command runs, as a click."""
    root = button.winfo_toplevel()
    root.update()
    assert button.winfo_viewable(), f"the button {button.cget('text')!r} is not on the screen"
    for event in ("<Enter>", "<ButtonPress-1>", "<ButtonRelease-1>"):
        button.event_generate(event, x=4, y=4, when="tail")
    root.update()


def find_button(widget: tk.Misc, text: str) -> ttk.Button:
    """The one ttk button below ``widget`` that says ``text``."""
    found = [w for w in _below(widget) if w.winfo_class() == "TButton" and w.cget("text") == text]
    assert len(found) == 1, f"{len(found)} buttons say {text!r}"
    return found[0]  # type: ignore[return-value]


def _below(widget: tk.Misc) -> list[tk.Misc]:
    out = []
    for child in widget.winfo_children():
        out += [child, *_below(child)]
    return out


def rows_shown(frame: tk.Misc) -> dict[str, str]:
    """The Status screen's rows as shown: each key label and the value label after it."""
    shown: dict[str, str] = {}
    key: str | None = None
    for child in frame.winfo_children():
        if child.winfo_class() != "TLabel":
            continue
        if str(child.cget("style")) == "Key.TLabel":
            key = str(child.cget("text"))
        elif key is not None:
            shown[key] = str(child.cget("text"))
            key = None
    return shown


def sizes_masked(text: str) -> str:
    """``text`` with every size ("78.41 GB") as "SIZE": the free space an allocation error
    quotes moves while other tests write to the same disk."""
    return re.sub(r"\d+(\.\d+)? ?[KMGTPE]?i?B\b", "SIZE", text)


def record_problems(logs_dir: Path, config: KeeperConfig, now: float) -> None:
    """Three problems in the keeper's error index, as the keeper writes them."""
    index = ErrorIndex(logs_dir, config.logs)
    try:
        index.record(
            "updater", "WARNING", "control plane unreachable: connection refused",
            timestamp=now - 3600, fix="check the network or the [update] server",
        )  # fmt: skip
        index.record(
            "node", "ERROR", "the node exited with code 1: database is locked",
            timestamp=now - 600, fix="see the node's log; restart it",
        )  # fmt: skip
        index.record(
            "keeper", "CRITICAL", "storage directory /mnt/pieces is gone",
            timestamp=now - 60, fix="reconnect the disk", kind="storage",
        )  # fmt: skip
    finally:
        index.close()


class KeeperStack:
    """A reference node under a real `nodekeeper run`, with its config on disk."""

    def __init__(self, tmp_path: Path, where: tuple[Path, int], **sections: Any) -> None:
        """``where``: the node's config dir and control port; ``sections``: keeper.toml
        tables laid over the reference settings."""
        config_dir, control = where
        settings = deep_merge(reference_settings(tmp_path, config_dir, control), sections)
        self.config_path = write_config(tmp_path / "keeper.toml", settings)
        self.config = load_config(self.config_path)
        self.port = self.config.status_host_port()[1]
        self.logs_dir = self.config.logs_path()
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.keeper: Keeper | None = None

    def start(self, state: str = "running") -> None:
        self.keeper = Keeper(self.config_path)
        wait_status(self.port, lambda s: s["state"] == state, timeout=60)

    def stop(self) -> None:
        if self.keeper is not None:
            try:
                self.keeper.stop()
            finally:
                self.keeper.kill()


@pytest.fixture
def stack(tmp_path: Path, node_dirs: tuple[Path, int]) -> Iterator[KeeperStack]:  # noqa: F811
    made = KeeperStack(tmp_path, node_dirs)
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
def short_root() -> Iterator[Path]:
    """A directory with a short name (/tmp/nodekeeper-XXXXXXXX) for stacks whose paths the
    window shows (and ``make screenshots`` publishes): they read like an install, not
    like pytest's /tmp/pytest-of-root/pytest-N/test_name0/."""
    root = Path(tempfile.mkdtemp(prefix="nodekeeper-", dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The keeper and the client honour proxy variables; a CI runner's proxy must not see
    loopback (as in tests/updater)."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def operator_node(root: Path, allocated: str = "2 GB") -> NodeSetup:
    """A reference node set up as an operator would: wallet, e-mail, external address
    (`storagenode setup`, as tests/nodes.setup_node but with the operator's fields)."""
    node = NodeSetup(root / "node" / "config", root / "node" / "storage", free_port(), free_port())
    done = subprocess.run(
        [
            *DEV_NODE, "setup",
            "--config-dir", str(node.config_dir), "--storage-dir", str(node.storage_dir),
            "--allocated", allocated,
            "--listen", f"127.0.0.1:{node.port}",
            "--control-listen", f"127.0.0.1:{node.control_port}",
            "--wallet", WALLET, "--email", "operator@example.com",
            "--external-address", f"node.example.net:{node.port}",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return node


@pytest.fixture
def lab(short_root: Path, no_proxies: None) -> Iterator[Lab]:
    """The updater tests' end-to-end stack (control plane, keeper with [update], the
    reference node set up with the operator's fields), in a short-named directory."""
    made = Lab(short_root, setup=operator_node(short_root))
    try:
        yield made
    finally:
        made.close()
