"""Run Python code in the Windows runtime under Wine, from pytest on Linux.

`make test` prepares a private Wine prefix with the runtime and starts its wineserver
(scripts/with-test-services.sh); the fixture below then only reads the environment.
Run outside make, the fixture prepares the same prefix itself if `wine` is installed
(the runtime and the prefix template are cached, so that takes seconds after the first
time) and skips with the reason otherwise. NODEKEEPER_TEST_REQUIRE_WINE=1 turns that skip
into a failure, so `make test` cannot silently lose the Windows tests. Under pytest-xdist
the workers share one prefix and wineserver for the run (see _shared_by_workers).

Other test packages reuse the fixture by importing it into their conftest.py:

    from tests.windows.wine import wine  # noqa: F401

Pipe rules (../shared/windows-on-linux.md): a Windows python.exe must never write to a
regular file (it dies in init_sys_streams), so output always comes back through a pipe,
stdin is /dev/null, and Wine's background processes were started detached beforehand.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULT_PREFIX = "RESULT "  # the line a Windows-side scenario prints its JSON result on


def windows_path(path: Path | str) -> str:
    """A Linux path as the Windows side sees it: Wine maps / to drive Z:."""
    return "Z:" + str(PurePosixPath(Path(path).resolve())).replace("/", "\\")


@dataclass(frozen=True)
class WineResult:
    returncode: int
    output: str  # stdout and stderr, interleaved as written

    def result(self) -> Any:
        """The JSON a scenario printed after RESULT_PREFIX (the last such line)."""
        lines = [ln for ln in self.output.splitlines() if ln.startswith(RESULT_PREFIX)]
        if not lines:
            raise AssertionError(f"no {RESULT_PREFIX.strip()} line; output:\n{self.output}")
        return json.loads(lines[-1][len(RESULT_PREFIX) :])


@dataclass(frozen=True)
class WineRuntime:
    """The Windows CPython runtime inside one Wine prefix."""

    runtime: Path  # the runtime directory (Linux path)
    env: dict[str, str]  # the environment that selects the prefix (WINEPREFIX, ...)

    @property
    def python(self) -> str:
        return windows_path(self.runtime / "python.exe")

    def run(self, *args: str, timeout: float = 120) -> WineResult:
        """`python.exe ARGS...` in the runtime; returns its exit code and output."""
        return self.run_exe(self.python, *args, timeout=timeout)

    def run_code(self, code: str, timeout: float = 120) -> WineResult:
        return self.run("-c", code, timeout=timeout)

    def run_script(self, script: Path, *args: str, timeout: float = 120) -> WineResult:
        return self.run(windows_path(script), *args, timeout=timeout)

    def run_exe(self, exe: str, *args: str, timeout: float = 120) -> WineResult:
        """Any Windows program in the prefix (`wine EXE ARGS...`)."""
        proc = subprocess.run(
            ["wine", exe, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        text = proc.stdout.decode("utf-8", "replace").replace("\r\n", "\n")
        return WineResult(proc.returncode, text)


def _parse_exports(text: str) -> dict[str, str]:
    """`export A=1 B=2` lines, as scripts/wine-prepare.sh prints them."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if words[:1] == ["export"]:
            for word in words[1:]:
                key, _, value = word.partition("=")
                found[key] = value
    return found


def _wine_env(overrides: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **overrides, "WINEDEBUG": "-all", "WINEARCH": "win64"}
    # Programs we install under Wine (the MSI) must not write menu entries into $HOME.
    env.setdefault("WINEDLLOVERRIDES", "winemenubuilder.exe=d")
    env.pop("DISPLAY", None)  # console programs need no X; Wine would try to use it
    return env


def _unavailable(reason: str) -> None:
    if os.environ.get("NODEKEEPER_TEST_REQUIRE_WINE") == "1":
        pytest.fail(f"NODEKEEPER_TEST_REQUIRE_WINE=1 but {reason}")
    pytest.skip(f"Windows tests need Wine: {reason} (run them through `make test`)")


def _prepare_and_start(owner_pid: int) -> dict[str, str]:
    """A fresh prefix copy with its wineserver running; cleaned up by wine-start.sh's
    watcher when ``owner_pid`` ends (or by wine-cleanup.sh, whoever comes first)."""
    if shutil.which("wine") is None:
        _unavailable("`wine` is not installed (make system-packages installs it)")
    prepare = subprocess.run(
        [str(ROOT / "scripts" / "wine-prepare.sh")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if prepare.returncode != 0:
        _unavailable(f"scripts/wine-prepare.sh failed:\n{prepare.stderr}")
    env = _wine_env(_parse_exports(prepare.stdout))
    start_env = {**env, "NODEKEEPER_WINE_OWNER_PID": str(owner_pid)}
    subprocess.run([str(ROOT / "scripts" / "wine-start.sh")], env=start_env, check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)  # fmt: skip
    return env


def _shared_by_workers(shared_dir: Path) -> dict[str, str]:
    """Under pytest-xdist every worker is a session of its own; booting a wineserver in
    each would cost seconds and ~100 MB per worker. The first worker that needs Wine
    prepares one prefix for the run, under a lock, and leaves its environment in the
    directory all workers share; the others reuse it. Its owner is the xdist controller
    (the workers' parent), so the watcher cleans it up when the whole run ends."""
    import fcntl

    saved = shared_dir / "wine-env.json"
    with (shared_dir / "wine-env.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if saved.exists():
            found = json.loads(saved.read_text())
            if "unavailable" in found:
                _unavailable(found["unavailable"])
            return found
        try:
            env = _prepare_and_start(owner_pid=os.getppid())
        except pytest.skip.Exception as exc:  # every worker skips for the same reason
            saved.write_text(json.dumps({"unavailable": str(exc.msg)}))
            raise
        saved.write_text(json.dumps(env))
        return env


@pytest.fixture(scope="session")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WineRuntime]:
    """One Wine prefix and wineserver for the whole run, with the runtime in it."""
    prepared = os.environ.get("NODEKEEPER_WINE_RUNTIME")
    if prepared and os.environ.get("WINEPREFIX"):  # `make test` started it for us
        yield WineRuntime(Path(prepared), _wine_env({}))
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):
        env = _shared_by_workers(tmp_path_factory.getbasetemp().parent)
        yield WineRuntime(Path(env["NODEKEEPER_WINE_RUNTIME"]), env)
        return
    env = _prepare_and_start(owner_pid=os.getpid())
    try:
        yield WineRuntime(Path(env["NODEKEEPER_WINE_RUNTIME"]), env)
    finally:
        subprocess.run([str(ROOT / "scripts" / "wine-cleanup.sh")], env=env, check=False,
                       stdin=subprocess.DEVNULL, capture_output=True)  # fmt: skip


def scenario(wine: WineRuntime, name: str, *args: str, timeout: float = 120) -> Any:
    """Runs one scenario of tests/windows/winside/scenarios.py and returns its result."""
    script = Path(__file__).parent / "winside" / "scenarios.py"
    done = wine.run_script(script, name, *args, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"scenario {name} exited {done.returncode}:\n{done.output}")
    return done.result()


def argv_for(wine: WineRuntime, args: Sequence[str]) -> list[str]:
    return [wine.python, *args]
