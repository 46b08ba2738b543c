"""The tray app's Windows parts, for real inside Wine (tests/windows/test_tray_wine.py).

    python.exe tray_side.py icon        # make_pystray_icon with pystray's win32 backend
    python.exe tray_side.py last_seen   # where the per-user "last seen" file lives
    python.exe tray_side.py tk DONE     # a Tk window, open until the file DONE exists

Each prints one line `RESULT {json}` with what it saw; the pytest side asserts on it.

How the icon is seen (no one can look at Wine's notification area from here):
- pystray's hidden window, by the class name pystray registers (FindWindowW) and
  IsWindowVisible/IsWindow;
- every Shell_NotifyIcon call pystray makes, with its result: pystray ignores the
  result, so the call is wrapped (the real call still runs) to record it;
- an independent probe: Shell_NotifyIcon(NIM_MODIFY) for pystray's (hWnd, uID) succeeds
  only while the shell has that icon, and fails once it is deleted.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
import time
from typing import Any

NIM_ADD, NIM_MODIFY, NIM_DELETE = 0, 1, 2
NIF_TIP, NIF_INFO = 0x04, 0x10


def result(value: Any) -> None:
    print("RESULT " + json.dumps(value), flush=True)


def wait(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def icon() -> None:
    import pystray._util.win32 as win32

    from nodekeeper.tray.icon_state import IconState
    from nodekeeper.tray.pystray_icon import make_pystray_icon

    calls: list[dict[str, int]] = []
    real = win32.Shell_NotifyIcon

    def recorded(code: int, data: Any) -> int:
        done = real(code, data)
        calls.append({"code": code, "flags": data.uFlags, "ok": int(done)})
        return int(done)

    win32.Shell_NotifyIcon = recorded
    user32 = ctypes.windll.user32
    clicked = threading.Event()
    # Deadlines, not waits: generous, for a loaded test machine.
    made = make_pystray_icon([("Open the logs", lambda: None)], clicked.set, start_timeout=60)
    seen: dict[str, Any] = {"made": made is not None}
    if made is None:
        result(seen)
        return
    inner = made._icon  # pystray's Icon: its window handle and the id it registered
    hwnd = inner._hwnd

    def probe() -> bool:
        """Whether the shell still has this icon (its tip modified in place)."""
        data = win32.NOTIFYICONDATAW(
            cbSize=ctypes.sizeof(win32.NOTIFYICONDATAW), hWnd=hwnd, hID=id(inner),
            uFlags=NIF_TIP, szTip=inner.title,
        )  # fmt: skip
        return bool(real(NIM_MODIFY, data))

    # pystray makes two windows of its own class: the icon's and its menu's.
    class_name = f"{inner.name}{id(inner)}SystemTrayIcon"
    user32.FindWindowW.restype = ctypes.c_void_p
    user32.FindWindowW.argtypes = [ctypes.c_wchar_p, ctypes.c_wchar_p]
    found = ctypes.create_unicode_buffer(256)
    user32.GetClassNameW(ctypes.c_void_p(hwnd), found, 256)
    seen.update(
        backend=made.backend,
        can_notify=made.can_notify,
        window_class=found.value == class_name,
        window_found=user32.FindWindowW(class_name, None) in (hwnd, inner._menu_hwnd),
        shell_has_icon=probe(),
        explorer_tray=bool(user32.FindWindowW("Shell_TrayWnd", None)),
    )
    made.show(IconState("attention", "nodekeeper: 2 unread problems", unread=2))
    seen["title_applied"] = wait(lambda: inner.title == "nodekeeper: 2 unread problems", 30)
    seen["image_size"] = list(inner.icon.size)
    made.notify("Node offline", "The node stopped answering 5 minutes ago.")
    seen["balloon_sent"] = wait(
        lambda: any(c["code"] == NIM_MODIFY and c["flags"] & NIF_INFO for c in calls), 30
    )
    # A click on the icon: the shell sends the icon's callback message to its window.
    user32.PostMessageW(hwnd, win32.WM_NOTIFY, 0, win32.WM_LBUTTONUP)
    seen["clicked"] = clicked.wait(30)
    started = time.monotonic()
    seen["stopped"] = made.stop(timeout=30)
    seen["stop_seconds"] = round(time.monotonic() - started, 2)
    seen["thread_alive"] = made.thread.is_alive()
    seen["window_gone"] = not user32.IsWindow(ctypes.c_void_p(hwnd))
    seen["class_gone"] = not user32.FindWindowW(class_name, None)
    seen["shell_has_icon_after"] = probe()
    seen["calls"] = calls
    result(seen)


def last_seen() -> None:
    from pathlib import Path

    from nodekeeper.tray import last_seen as module

    path = module.default_path()
    saved = module.save(path, 1_700_000_000.5)
    result({
        "path": str(path),
        "local_app_data": os.environ.get("LOCALAPPDATA"),
        "under_local_app_data": Path(path).is_relative_to(Path(os.environ["LOCALAPPDATA"])),
        "saved": saved,
        "loaded": module.load(path),
    })  # fmt: skip


def tk(done: str) -> None:
    import tkinter

    root = tkinter.Tk()
    root.title("nodekeeper under Wine")
    root.geometry("360x200+40+40")
    frame = tkinter.Frame(root, bg="#2e7d32")
    frame.pack(fill="both", expand=True)
    tkinter.Label(frame, text="Tk under Wine", bg="#2e7d32", fg="white",
                  font=("Segoe UI", 16)).pack(pady=30)  # fmt: skip
    tkinter.Button(frame, text="OK").pack()
    root.update()
    # Mapped once Wine's X11 driver has shown it: on a loaded machine after a few turns.
    deadline = time.monotonic() + 60
    while not root.winfo_ismapped() and time.monotonic() < deadline:
        root.update()
        time.sleep(0.05)
    result({
        "tk": root.tk.call("info", "patchlevel"),
        "mapped": bool(root.winfo_ismapped()),
        "geometry": [root.winfo_rootx(), root.winfo_rooty(), root.winfo_width(),
                     root.winfo_height()],
    })  # fmt: skip
    # Open until the pytest side has taken its screenshot (with a deadline of our own).
    deadline = time.monotonic() + 60
    while not os.path.exists(done) and time.monotonic() < deadline:
        root.update()
        time.sleep(0.05)
    root.destroy()


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    {"icon": icon, "last_seen": last_seen, "tk": tk}[name](*args)
