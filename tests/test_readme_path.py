"""The README's "Running it for real", followed literally against real processes.

The commands come out of README.md itself (every ```sh block of that section, in
order), so README and test cannot drift. What is replaced, and nothing else:

- example addresses: ``https://version.example.net`` (the control plane) and
  ``https://cdn.example.net`` (an artifact host) become loopback URLs of a control
  plane / static file server this test runs; ``0.0.0.0:7780`` the control plane's
  loopback address; the node's ports ``28967`` / ``7778`` and the keeper's ``7779``
  become free ports;
- example directories (``/etc/nodekeeper``, ``/var/lib/nodekeeper``, ``/srv/storagenode``)
  become directories under the test's tmp dir;
- ``"500 GB"`` becomes ``"1 GB"`` (a test machine may not have the space);
- ``linux_amd64`` becomes this machine's platform key, if it is another one.

Every replaced text must occur in the section (a README that stops using one fails
here). Each block runs in bash with ``set -euo pipefail``; exports carry from block to
block, as in one terminal; the venv's bin directory is first on PATH, as after the
install the README describes. A block that starts a service in the foreground
(``nodekeeper server run``, ``nodekeeper run``) is started in the background instead and
waited for until it answers, as a service manager would.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil
import pytest

from nodekeeper.version.platforms import this_platform
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("builder", ["storagenode.release", "nodekeeper.release"])
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_the_release_command_writes_a_world_readable_zip(tmp_path, builder, umask):
    """A release zip is public: a web server running as another user must read it,
    whatever the builder's umask (the temp file it is written through is 0600)."""
    out = tmp_path / "releases"
    result = subprocess.run(
        [sys.executable, "-m", builder, "--version", "1.2.3", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: os.umask(umask),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.parent == out and path.name.endswith("_1.2.3.zip")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# -- reading the README -------------------------------------------------------------------

README = ROOT / "README.md"
SERVICES = ("nodekeeper server run", "nodekeeper run")


def section(text: str, heading: str) -> str:
    """The text under ``## heading`` up to the next level-2 heading."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def substitute(text: str, table: dict[str, str]) -> str:
    """Every key replaced in one pass (a replacement is never replaced again)."""
    for key in table:
        assert key in text, f"README no longer uses {key!r}: update the test's table"
    pattern = "|".join(re.escape(k) for k in sorted(table, key=len, reverse=True))
    return re.sub(pattern, lambda m: table[m.group(0)], text)


def service_command(block: str) -> str | None:
    """The command of a block that starts a foreground service, else None."""
    lines = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
    command = " ".join(ln.rstrip("\\").strip() for ln in lines)
    return command if command.startswith(SERVICES) else None


# -- running it ---------------------------------------------------------------------------


class Shell:
    """bash blocks run one after another; exports carry over as in one terminal."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work = work
        self.env = env
        self.exports = work.parent / "exports.sh"
        self.exports.write_text("")
        self.services: list[subprocess.Popen[bytes]] = []

    def run(self, block: str) -> str:
        script = f"set -euo pipefail\nsource {self.exports}\n{block}\nexport -p > {self.exports}\n"
        result = subprocess.run(
            ["bash", "-c", script], cwd=self.work, env=self.env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, f"{block}\nexit {result.returncode}:\n{result.stderr}"
        return result.stdout + result.stderr

    def start(self, command: str, log: Path) -> subprocess.Popen[bytes]:
        script = f"set -euo pipefail\nsource {self.exports}\nexec {command}\n"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["bash", "-c", script], cwd=self.work, env=self.env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.services.append(proc)
        return proc

    def stop_services(self) -> None:
        for proc in reversed(self.services):  # the keeper (and its node) first
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_until(condition, timeout: float, what: str, proc=None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: exited {proc.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            detail = log.read_text()[-3000:] if log else ""
            raise AssertionError(f"not within {timeout} s: {what}\n{detail}")
        time.sleep(0.2)


def get_json(url: str):
    try:
        response = httpx.get(url, timeout=10)
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def serve_directory(directory: Path, port: int) -> ThreadingHTTPServer:
    """A static file host on loopback (the README's cdn.example.net)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def clean_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NODEKEEPER_", "XDG_", "PYTHON", "VIRTUAL_ENV"))
    }
    # As after the README's install: the venv's bin directory first on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    return env


@pytest.mark.e2e
def test_running_it_for_real_as_the_readme_says(tmp_path):
    cp, cdn, node_public, node_control, keeper_status = (free_port() for _ in range(5))
    root = tmp_path / "root"  # stands for /
    work = tmp_path / "work"  # the operator's current directory
    work.mkdir()
    table = {
        "https://version.example.net": f"http://127.0.0.1:{cp}",
        "0.0.0.0:7780": f"127.0.0.1:{cp}",
        "https://cdn.example.net": f"http://127.0.0.1:{cdn}",
        "0.0.0.0:28967": f"127.0.0.1:{node_public}",
        "127.0.0.1:7778": f"127.0.0.1:{node_control}",
        "127.0.0.1:7779": f"127.0.0.1:{keeper_status}",
        "/var/lib/nodekeeper": f"{root}/var/lib/nodekeeper",
        "/etc/nodekeeper": f"{root}/etc/nodekeeper",
        "/srv/storagenode": f"{root}/srv/storagenode",
        '"500 GB"': '"1 GB"',
    }
    if this_platform() != "linux_amd64":
        table["linux_amd64"] = this_platform()
    text = substitute(section(README.read_text(), "Running it for real"), table)
    blocks = sh_blocks(text)
    assert len(blocks) >= 5, text

    cdn_server = serve_directory(work / "releases", cdn)
    shell = Shell(work, clean_env(tmp_path / "home"))
    outputs: list[str] = []
    status_url = f"http://127.0.0.1:{keeper_status}/status"
    try:
        for i, block in enumerate(blocks):
            command = service_command(block)
            if command is None:
                outputs.append(shell.run(block))
                continue
            log = tmp_path / f"service-{i}.log"
            proc = shell.start(command, log)
            if command.startswith("nodekeeper server run"):
                wait_until(
                    lambda: get_json(f"http://127.0.0.1:{cp}/"), 120, "control plane up", proc, log
                )
            else:
                # As an operator would: wait for the keeper to install and start the node.
                wait_until(
                    lambda: _installed(get_json(status_url)), 300, "node installed", proc, log
                )
        status = get_json(status_url)
        installed = status["update"]["current"]
        assert installed in ("1.2.0", "1.2.1")
        # The README's last command: `nodekeeper status` reports the running node.
        assert "running" in outputs[-1] and installed in outputs[-1], outputs[-1]
        node_pid = status["pid"]
    finally:
        shell.stop_services()
        cdn_server.shutdown()
    assert not _still_running(node_pid)
    for zip_path in (work / "releases").glob("*.zip"):
        assert stat.S_IMODE(zip_path.stat().st_mode) == 0o644, zip_path


def _installed(status) -> bool:
    if not status or status.get("state") != "running":
        return False
    update = status.get("update") or {}
    return bool(update.get("current")) and not update.get("step")


def _still_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.e2e
def test_the_admin_commands_against_make_run_as_the_readme_says(tmp_path):
    """The README's block for `make run`'s control plane, against a real quickstart on
    its default data dir (under this test's HOME), with only its port replaced."""
    port = free_port()
    text = section(README.read_text(), "What `make run` shows")
    blocks = sh_blocks(substitute(text, {"127.0.0.1:7780": f"127.0.0.1:{port}"}))
    assert len(blocks) == 1, text
    env = clean_env(tmp_path / "home")
    quickstart = subprocess.Popen(
        ["nodekeeper", "quickstart", "--plain", "--listen", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        lines = []
        deadline = time.monotonic() + 240
        while not any("keeper answering" in line for line in lines):
            line = quickstart.stdout.readline()
            assert line and time.monotonic() < deadline, "".join(lines)
            lines.append(line)
        work = tmp_path / "work"
        work.mkdir()
        out = Shell(work, env).run(blocks[0])
    finally:
        quickstart.send_signal(signal.SIGINT)
        code = quickstart.wait(120)
    assert code == 0
    assert "storagenode" in out  # rollout status, through the token from the data dir
    # ...and `nodekeeper status` found quickstart's keeper through its config.
    assert re.search(r"^state\s+\w+", out, re.MULTILINE), out
    assert re.search(r"^pid\s+\d+", out, re.MULTILINE), out
    data_dir = tmp_path / "home" / ".local" / "share" / "nodekeeper" / "quickstart"
    assert (data_dir / "keeper.toml").exists()
