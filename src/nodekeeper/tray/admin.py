"""Actions need administrator rights: what to tell an ordinary user, and how to elevate.

The keeper takes actions (restart, settings, pauses) only with the control token, a file
readable by the keeper's account and administrators alone (the control API's contract).
The tray app runs as the logged-in user; when it cannot read the token it says so
plainly and offers the way that works on this system: on Windows the same action as an
elevated ``nodekeeper`` command (the UAC prompt, through ShellExecute's ``runas`` verb),
on Linux the ``sudo`` command to paste into a terminal.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# Each action the window offers, as the `nodekeeper` command line that does the same.
# Settings and setup have no command: their values are typed into the window.
COMMANDS: dict[str, list[str]] = {
    "restart": ["node", "restart"],
    "pause": ["update", "pause"],
    "quiet-window": ["update", "quiet-window"],
}


def command_for(action: str, config: Path | None, extra: Sequence[str] = ()) -> list[str] | None:
    """``nodekeeper ...`` arguments for ``action`` with its own ``extra`` arguments
    (None: no command does it)."""
    args = COMMANDS.get(action)
    if args is None:
        return None
    return [*args, *extra, *(["--config", str(config)] if config else [])]


def needs_admin_message(
    action: str, config: Path | None, token_path: Path | None, extra: Sequence[str] = ()
) -> str:
    """The sentence shown when an action cannot be sent for lack of the token."""
    where = f" ({token_path})" if token_path else ""
    text = (
        f"To {ACTION_WORDS.get(action, action)} this window needs administrator rights: "
        f"the keeper's control token{where} is readable only by administrators."
    )
    args = command_for(action, config, extra)
    if sys.platform == "win32":
        if args:
            return text + " Accept the Windows prompt to do it as an administrator."
        return text + " Start the tray app as administrator (right-click, Run as administrator)."
    if args:
        return text + " In a terminal, run: sudo " + shlex.join(["nodekeeper", *args])
    how = shlex.join(["nodekeeper", "tray", *(["--config", str(config)] if config else [])])
    return text + f" Ask an administrator, or start the window as one: sudo -E {how}"


ACTION_WORDS = {
    "restart": "restart the node",
    "settings": "change the node's settings",
    "setup": "set the node up",
    "pause": "pause updates",
    "quiet-window": "set the quiet window",
}


def run_elevated(args: list[str]) -> str | None:
    """Windows: run ``python -m nodekeeper <args>`` elevated (the UAC prompt). Returns None
    when it started, else why not (the user said no, or not Windows)."""
    if sys.platform != "win32":
        return "elevation through UAC exists only on Windows"
    import ctypes

    params = subprocess.list2cmdline(["-m", "nodekeeper", *args])
    # ShellExecuteW returns a value > 32 on success; 5 (access denied) when the user
    # declined the prompt.
    code = ctypes.windll.shell32.ShellExecuteW(None, "runas", sys.executable, params, None, 0)
    if code > 32:
        return None
    if code == 5:
        return "the administrator prompt was declined"
    return f"could not start the elevated command (ShellExecute error {code})"
