"""The tray app's Windows side in the Windows runtime under Wine, on a private Xvfb
(decision 072): pystray's win32 icon through make_pystray_icon, a balloon, a click and
stop; the runtime's own Tk opening a window, screenshot from the X display; the per-user
"last seen" file under %LOCALAPPDATA%; the real tray app against a real keeper whose
node needs setup, its Set up screen drawn whole on an 800x600 screen (decision 073).

Wine's user32 needs an X display to create any window, even pystray's hidden one; the
icon and Tk tests run in a prefix of their own bound to this module's display (see
``shown``); the others share the run's prefix. The scenarios are in winside/tray_side.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port
from tests.tray.conftest import PROXY_VARS, KeeperStack
from tests.windows.pictures import wait_for_wizard
from tests.windows.wine import WineResult, WineRuntime, windows_path
from tests.xdisplay import screenshot, xvfb

pytestmark = pytest.mark.wine

SIDE = Path(__file__).parent / "winside" / "tray_side.py"
NIM_ADD, NIM_MODIFY, NIM_DELETE = 0, 1, 2
NIF_INFO = 0x10
# Tcl finds its library relative to the executable's path as given; through Wine's Z:
# drive (the runtime in the run's directory tree) it found no init.tcl, through the C:
# drive it does. The runtime sits at C:\nodekeeper\runtime in every test prefix.
RUNTIME_ON_C = "C:\\nodekeeper\\runtime"


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb(1024, 768) as name:
        yield name


@pytest.fixture(scope="module")
def shown(display: str) -> Iterator[WineRuntime]:
    """A Wine prefix of this module's own, every process of it on this module's display.
    Wine binds a wineserver's desktop to the display of the first window made in it;
    on the run's shared prefix that was another worker's Xvfb, gone or different, and
    under the full suite the icon and the Tk window were then never made."""
    from tests.windows.msi import private_wine

    with private_wine() as own:
        yield on_display(own, display)


def on_display(wine: WineRuntime, display: str) -> WineRuntime:
    return replace(wine, env={**wine.env, "DISPLAY": display})


def side(wine: WineRuntime, *args: str, timeout: float = 90) -> Any:
    done: WineResult = wine.run_exe(f"{RUNTIME_ON_C}\\python.exe", windows_path(SIDE), *args,
                                    timeout=timeout)  # fmt: skip
    assert done.returncode == 0, done.output
    return done.result()


def test_the_pystray_icon_shows_notifies_and_stops_under_wine(shown: WineRuntime) -> None:
    seen = side(shown, "icon")
    assert seen["made"] and seen["backend"] == "win32", seen
    # pystray's window, and the shell's own record of the icon (NIM_ADD succeeded, and
    # modifying it in place works while it exists).
    assert seen["window_class"] and seen["window_found"], seen
    assert seen["explorer_tray"] and seen["shell_has_icon"], seen
    calls = seen["calls"]
    assert {"code": NIM_ADD, "flags": 7, "ok": 1} in calls, calls  # message, icon, tip
    # show(): the tooltip and the image applied.
    assert seen["title_applied"] and seen["image_size"] == [64, 64]
    # notify(): a balloon (NIF_INFO), accepted by the shell.
    assert seen["can_notify"] and seen["balloon_sent"], seen
    assert any(c["code"] == NIM_MODIFY and c["flags"] & NIF_INFO and c["ok"] for c in calls)
    # A left click on the icon ran the default action.
    assert seen["clicked"]
    # stop(): the loop ended within its deadline, the window and the icon are gone.
    # (Wine's shell takes 2 s over NIM_DELETE; Windows does not.)
    assert seen["stopped"] and not seen["thread_alive"] and seen["stop_seconds"] < 30, seen
    assert seen["window_gone"] and seen["class_gone"], seen
    assert {"code": NIM_DELETE, "flags": 0, "ok": 1} in calls, calls
    assert not seen["shell_has_icon_after"]


def test_without_a_display_there_is_no_icon_and_the_process_still_ends(
    wine: WineRuntime,
) -> None:
    """No X display: Wine cannot create pystray's window, its loop thread dies, and
    make_pystray_icon says None (the app's fallback then) instead of hanging the exit
    on pystray's setup thread."""
    started = time.monotonic()
    seen = side(wine, "icon", timeout=60)
    assert seen == {"made": False}
    assert time.monotonic() - started < 30


def test_the_runtimes_tk_opens_a_window_on_the_x_display(
    shown: WineRuntime, display: str, tmp_path: Path
) -> None:
    done = tmp_path / "screenshot-taken"
    proc = subprocess.Popen(
        ["wine", f"{RUNTIME_ON_C}\\python.exe", windows_path(SIDE), "tk", windows_path(done)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=shown.env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        for raw in proc.stdout:  # the scenario prints RESULT once its window is up
            lines.append(raw.decode("utf-8", "replace"))
            if lines[-1].startswith("RESULT "):
                break
        seen = WineResult(0, "".join(lines)).result()
        assert seen["mapped"] and seen["tk"].startswith("8.6"), seen
        x, y, width, height = seen["geometry"]
        assert (width, height) == (360, 200), seen
        shot = screenshot(display).crop((x, y, x + width, y + height))
        path = tmp_path / "wine-tk-window.png"
        shot.save(path)
        print(f"screenshot: {path}")
        target = os.environ.get("NODEKEEPER_SCREENSHOTS")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(target) / path.name)
        colours = shot.getcolors(maxcolors=1 << 16)
        assert colours is not None and len(colours) > 10, "a blank window"
        count, commonest = max(colours)
        assert commonest == (0x2E, 0x7D, 0x32) and count > width * height // 2, commonest
    finally:
        done.touch()
        try:
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_last_seen_lives_in_the_users_local_app_data(wine: WineRuntime) -> None:
    seen = side(wine, "last_seen")
    assert seen["under_local_app_data"], seen
    assert seen["path"].endswith("\\AppData\\Local\\nodekeeper\\last-seen.json"), seen
    assert seen["saved"] == seen["loaded"] == 1_700_000_000.5
    # And on the disk of the prefix, in that user's profile.
    users = Path(wine.env["WINEPREFIX"]) / "drive_c" / "users"
    found = list(users.glob("*/AppData/Local/nodekeeper/last-seen.json"))
    assert len(found) == 1 and '"last_seen": 1700000000.5' in found[0].read_text()


def test_the_tray_app_shows_the_whole_set_up_screen_on_an_800x600_desktop(
    wine: WineRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`nodekeeper tray` as the Start menu runs it (pythonw.exe), in the Windows runtime,
    against a real keeper (`nodekeeper run` on Linux) whose node has no config, on an
    800x600 Windows desktop (a Wine virtual desktop of its own, with its taskbar: Windows'
    idea of the screen is then 800x600, whatever display the prefix's other windows
    use). The window opens on the Set up screen by itself with every field, both
    Browse... buttons and the button that sends the form drawn, and the whole window, its
    title bar included, is on the screen. The screen is written as wine-tray-set-up.png."""
    for name in PROXY_VARS:  # the keeper and the client honour them; loopback must not
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    keeper = KeeperStack(tmp_path, (node_dir, free_port()), node={"setup_recheck_seconds": 3600.0})
    env = {k: v for k, v in wine.env.items() if k.upper() not in PROXY_VARS}
    try:
        keeper.start(state="needs-setup")
        with xvfb(800, 600) as display:
            desktop = on_desktop(f"nk-tray-test-{os.getpid()}", *DESKTOP)
            started = time.time()
            starter = subprocess.Popen(
                ["wine", *desktop, f"{RUNTIME_ON_C}\\pythonw.exe", "-m", "nodekeeper", "tray",
                 "--config", windows_path(keeper.config_path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**env, "DISPLAY": display},
            )  # fmt: skip
            try:
                shot = wait_for_wizard(display, 30, tmp_path / "wine-tray-not-drawn.png")
                screen = screenshot(display)
            finally:
                end_tray(wine, started)
                starter.kill()  # Wine's start.exe, waiting for the desktop
                starter.wait(30)
    finally:
        keeper.stop()
    path = tmp_path / "wine-tray-set-up.png"
    screen.save(path)
    print(f"screenshot: {path}")
    target = os.environ.get("NODEKEEPER_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / path.name)
    # In a virtual desktop Wine draws the frame: the window's X window is all of it.
    x, y, width, height = shot.rect
    assert x >= 0 and y >= 0 and x + width <= 800 and y + height <= 600, shot.rect
    assert width >= 776 + 8, shot.rect  # the screens' wrap lengths fit, and the borders


DESKTOP = (800, 600)


def on_desktop(name: str, width: int, height: int) -> list[str]:
    """The start of a `wine` command line that runs a program in a Wine virtual desktop
    of that size (its own explorer.exe, with a taskbar), as on a Windows desktop. Its X
    window is called "NAME - Wine desktop": a name without "nodekeeper" in it, which
    names the app's window."""
    return ["explorer", f"/desktop={name},{width}x{height}"]


def end_tray(wine: WineRuntime, started: float) -> None:
    """End the tray app started at ``started`` in this prefix: its Windows pid is in its
    instance lock (an older lock's pid may be another process's by now)."""
    users = Path(wine.env["WINEPREFIX"]) / "drive_c" / "users"
    for lock in users.glob("*/AppData/Local/Temp/nodekeeper/tray.lock"):
        text = lock.read_text().strip()
        if text.isdigit() and lock.stat().st_mtime >= started - 1:
            wine.run_code(f"import os\ntry: os.kill({int(text)}, 9)\nexcept OSError: pass")
