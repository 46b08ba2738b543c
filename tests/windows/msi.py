"""The MSI under Wine: build it once per run, install, query, remove (decision 066).

Each MSI test gets a Wine prefix of its own (``private_wine``: a hard-linked copy of the
cached template, seconds to make) and its own ports for the keeper's status API and the
node's control address (the KEEPER_STATUS and CONTROL_PORT properties), so under
pytest-xdist they run side by side without seeing each other's product, service or node.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.windows.wine import ROOT, WineRuntime, windows_path

SERVICE = "nodekeeper"


def build_msis(out: Path) -> dict[str, Path]:
    """Two MSIs of this tree: the project's version and a higher one, for the upgrade; the
    higher one ships a trusted root (decision 086: ``trusted_root``, the root of the real
    signed metadata in ``tuf_metadata``). Built once per run (a lock and a marker, shared
    by the xdist workers)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = out / "built.json"
        if done.exists():
            return {k: Path(v) for k, v in json.loads(done.read_text()).items()}
        runtime = out / "runtime"
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "windows-runtime.py"), "--out", str(runtime)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        from tests.windows.tuf_metadata import make_repository

        repository = make_repository(out / "tuf-metadata")
        trusted_root = out / "trusted-root.json"
        trusted_root.write_bytes(repository.root_v1)
        built = {"trusted_root": trusted_root, "tuf_metadata": repository.metadata}
        for label, version in (("current", None), ("next", "0.1.1")):
            argv = [sys.executable, str(ROOT / "installer" / "build.py"), "--runtime",
                    str(runtime), "--out", str(out / label)]  # fmt: skip
            if version:
                argv += ["--version", version, "--trusted-root", str(trusted_root)]
            done_build = subprocess.run(argv, capture_output=True, text=True, check=False)
            assert done_build.returncode == 0, done_build.stderr
            built[label] = Path(done_build.stdout.strip())
        done.write_text(json.dumps({k: str(v) for k, v in built.items()}))
        return built


@dataclass
class Msiexec:
    code: int
    log: str  # the verbose log file, then msiexec's console output
    seconds: float
    log_file: str = ""  # the verbose log file alone


class MsiSession:
    """One test's use of the prefix: installs, queries, and cleans up after itself."""

    def __init__(self, wine: WineRuntime, work: Path) -> None:
        from tests.support import free_port

        self.wine = wine
        self.work = work
        self.status_port = free_port()
        self.control_port = free_port()
        prefix = Path(wine.env["WINEPREFIX"])
        self.program_files = prefix / "drive_c" / "Program Files" / "nodekeeper"
        self.data = prefix / "drive_c" / "ProgramData" / "nodekeeper"
        self._logs = 0

    def msiexec(self, *args: str, timeout: float = 300) -> Msiexec:
        self._logs += 1
        log = self.work / f"msiexec-{self._logs}.log"
        started = time.monotonic()
        done = self.wine.run_exe(
            "msiexec", *args, "/qn", "/l*v", windows_path(log), timeout=timeout
        )
        raw = log.read_bytes() if log.exists() else b""
        # Windows writes the verbose log in UTF-16 with a BOM, Wine in plain 8-bit.
        text = raw.decode("utf-16") if raw[:2] == b"\xff\xfe" else raw.decode("utf-8", "replace")
        return Msiexec(done.returncode, text + done.output, time.monotonic() - started, text)

    def install(self, msi: Path, **properties: str) -> Msiexec:
        """With this session's ports (a later install of the same product keeps the config
        the first wrote, so they stay)."""
        properties = {
            "KEEPER_STATUS": f"127.0.0.1:{self.status_port}",
            "CONTROL_PORT": str(self.control_port),
            **properties,
        }
        props = [f"{k}={v}" for k, v in properties.items()]
        return self.msiexec("/i", windows_path(msi), *props)

    def uninstall(self, msi: Path, **properties: str) -> Msiexec:
        props = [f"{k}={v}" for k, v in properties.items()]
        return self.msiexec("/x", windows_path(msi), *props)

    def windows(self, code: str) -> Any:
        """Run Python in the test runtime (which imports our source tree) and return the
        JSON it prints last."""
        done = self.wine.run_code(code + "\nprint('RESULT ' + json.dumps(result))")
        return done.result()

    def service(self) -> dict[str, Any]:
        """The service's state, pid and configuration as the SCM holds them; {} when the
        service does not exist."""
        return dict(
            self.windows(
                "import json, win32service\n"
                "from nodekeeper.service import windows_config\n"
                "result = {}\n"
                "try:\n"
                "    scm = win32service.OpenSCManager(None, None, 1)\n"
                "    h = win32service.OpenService(scm, 'nodekeeper', 4)\n"
                "    status = win32service.QueryServiceStatusEx(h)\n"
                "    result = {'state': status['CurrentState'], 'pid': status['ProcessId'],\n"
                "              'config': windows_config.read('nodekeeper')}\n"
                "except Exception as exc:\n"
                "    result = {'missing': str(exc)}\n"
            )
        )

    def wait_state(self, state: int, timeout: float) -> dict[str, Any]:
        return wait(lambda: (s := self.service()).get("state") == state and s, timeout,
                    f"service state {state}")  # fmt: skip

    def alive(self, pids: list[int]) -> list[int]:
        return list(
            self.windows(
                "import json, win32api, win32process\nresult = []\n"
                f"for pid in {pids!r}:\n"
                "    try: h = win32api.OpenProcess(0x1000, False, pid)\n"
                "    except win32api.error: continue\n"
                "    if win32process.GetExitCodeProcess(h) == 259: result.append(pid)\n"
            )
        )

    def tray_entries(self, links: list[Path]) -> dict[str, Any]:
        """What the shell reads from the Start menu's links (target, arguments, working
        directory) and the machine's Run value for the tray app (64-bit view; None when
        absent), in one run of the runtime."""
        paths = [windows_path(link) for link in links]
        return dict(
            self.windows(
                "import json, pythoncom, winreg\nfrom win32com.shell import shell\n"
                "pythoncom.CoInitialize()\nresult = {'links': {}, 'run': None}\n"
                f"for path in {paths!r}:\n"
                "    link = pythoncom.CoCreateInstance(shell.CLSID_ShellLink, None,\n"
                "        pythoncom.CLSCTX_INPROC_SERVER, shell.IID_IShellLink)\n"
                "    link.QueryInterface(pythoncom.IID_IPersistFile).Load(path)\n"
                "    result['links'][path] = {'target': link.GetPath(shell.SLGP_RAWPATH)[0],\n"
                "        'arguments': link.GetArguments(),\n"
                "        'working_directory': link.GetWorkingDirectory()}\n"
                "try:\n"
                "    with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE,\n"
                "            r'Software\\Microsoft\\Windows\\CurrentVersion\\Run', 0,\n"
                "            winreg.KEY_READ | winreg.KEY_WOW64_64KEY) as key:\n"
                "        result['run'] = winreg.QueryValueEx(key, 'nodekeeper')[0]\n"
                "except OSError:\n"
                "    pass\n"
            )
        )

    def start_from_run_value(
        self, command: str, display: str, desktop: tuple[int, int] | None = None
    ) -> subprocess.Popen[bytes]:
        """The Run value's command line, started as Windows would at logon: the program in
        quotes, then its arguments. With an X display: Wine's user32 needs one. With
        ``desktop`` (width, height), in a Wine virtual desktop of that size (its own
        explorer.exe and taskbar; the returned process is then Wine's starter)."""
        assert command.startswith('"'), command
        program, _, arguments = command[1:].partition('" ')
        where = ["explorer", f"/desktop=nk-tray,{desktop[0]}x{desktop[1]}"] if desktop else []
        return subprocess.Popen(
            ["wine", *where, program, *arguments.split()],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**self.wine.env, "DISPLAY": display},
        )  # fmt: skip

    def prefix_path(self, windows: str) -> Path:
        """A C:\\ path as the Linux side sees it."""
        drive, _, rest = windows.partition(":\\")
        assert drive.upper() == "C", windows
        path = Path(self.wine.env["WINEPREFIX"]) / "drive_c"
        for part in filter(None, rest.split("\\")):  # Windows is case-insensitive
            found = (
                [p for p in path.iterdir() if p.name.lower() == part.lower()]
                if path.is_dir()
                else []
            )
            path = found[0] if found else path / part
        return path

    def acls(self, paths: list[str]) -> dict[str, Any]:
        return dict(
            self.windows(
                "import json\nfrom pathlib import Path\nfrom nodekeeper.service import acl\n"
                f"result = {{p: acl.read(Path(p)) for p in {paths!r}}}\n"
            )
        )

    def kill(self, pid: int) -> None:
        self.wine.run_code(f"import os\ntry: os.kill({pid}, 9)\nexcept OSError: pass")

    def status(self) -> dict[str, Any] | None:
        try:
            url = f"http://127.0.0.1:{self.status_port}/status"
            with urllib.request.urlopen(url, timeout=2) as reply:
                data: dict[str, Any] = json.loads(reply.read())
                return data
        except OSError:
            return None

    def pulse(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.control_port}/pulse"
            with urllib.request.urlopen(url, timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False


def wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.5)


@contextlib.contextmanager
def private_wine() -> Iterator[WineRuntime]:
    """A Wine prefix for one test, cleaned up after it (its wineserver and its copy)."""
    from tests.windows.wine import _prepare_and_start

    env = _prepare_and_start(owner_pid=os.getpid())
    try:
        yield WineRuntime(Path(env["NODEKEEPER_WINE_RUNTIME"]), env)
    finally:
        subprocess.run([str(ROOT / "scripts" / "wine-cleanup.sh")], env=env, check=False,
                       stdin=subprocess.DEVNULL, capture_output=True)  # fmt: skip
