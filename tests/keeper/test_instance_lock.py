"""One keeper per data directory: real `nodekeeper run` processes, real signals, real files.

A second keeper on the same config is refused before it writes anything (no log line, no
journal recovery), with a message that names the first keeper's pid; the lock goes with
the process however it dies (kill -9), and a keeper started while the previous one is
still exiting waits for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from nodekeeper.keeper import instance_lock
from nodekeeper.keeper.instance_lock import InstanceLocked, acquire, parse_pid
from tests.keeper.conftest import fast_settings, program
from tests.support import free_port

pytestmark = pytest.mark.timeout(180)
NODEKEEPER = [sys.executable, "-m", "nodekeeper", "run", "--config"]


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under ``root``: (size, mtime in ns)."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = (st.st_size if path.is_file() else 0, st.st_mtime_ns)
    return out


def keeper_config(tmp_path: Path) -> tuple[Path, int]:
    """A keeper with the updater on (so a second one would recover the journal): nothing
    installed yet, the control plane down (checks fail, logged)."""
    port = free_port()
    settings = fast_settings(
        tmp_path,
        program("hanger.py"),
        status={"listen": f"127.0.0.1:{port}"},
        update={"server": f"http://127.0.0.1:{free_port()}", "first_check": "now"},
    )
    config = tmp_path / "keeper.toml"
    config.write_bytes(tomli_w.dumps(settings).encode())
    return config, port


def start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*NODEKEEPER, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def status_answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2):
            return True
    except OSError:
        return False


def finish(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@pytest.mark.e2e
def test_a_second_keeper_is_refused_names_the_first_and_writes_nothing(tmp_path: Path) -> None:
    config, port = keeper_config(tmp_path)
    data = tmp_path / "data"
    first = start(config)
    second = None
    try:
        wait_for(lambda: status_answers(port), 60, "the first keeper's status API")
        wait_for(lambda: (data / "state").exists(), 60, "the first keeper's state directory")
        # Frozen (it keeps its lock), so that only the second keeper could change the tree.
        first.send_signal(signal.SIGSTOP)
        before = tree(data)
        second = start(config)
        code = second.wait(60)
        assert second.stderr is not None
        stderr = second.stderr.read()
        after = tree(data)
        first.send_signal(signal.SIGCONT)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
        if second is not None:
            finish(second)
    try:
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert changed == []  # no log line, no journal, no state touched
        assert code == 1, stderr
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, stderr  # one clear line, no traceback
        assert f"another keeper (pid {first.pid}) is already running" in lines[0]
        assert str(data) in lines[0]
        assert status_answers(port)  # the first keeper goes on
    finally:
        first.send_signal(signal.SIGTERM)
        try:
            first.wait(30)
        except subprocess.TimeoutExpired:
            finish(first)


@pytest.mark.e2e
def test_after_kill_9_of_the_keeper_a_new_one_starts(tmp_path: Path) -> None:
    config, port = keeper_config(tmp_path)
    lock_file = tmp_path / "data" / instance_lock.LOCK_NAME
    first = start(config)
    try:
        wait_for(lambda: status_answers(port), 60, "the first keeper's status API")
        assert parse_pid(lock_file.read_bytes()) == first.pid
        first.kill()  # SIGKILL: no cleanup; the lock file stays, the OS lock goes
        first.wait(10)
        # Its node (the hanger) may still hold the status port's neighbour resources, but
        # not the lock: the file descriptor is not inherited.
        second = start(config)
        try:
            wait_for(lambda: status_answers(port), 60, "the new keeper's status API")
            assert parse_pid(lock_file.read_bytes()) == second.pid
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(30)
            except subprocess.TimeoutExpired:
                finish(second)
    finally:
        finish(first)


# -- the lock itself, in-process ----------------------------------------------------------


def test_the_lock_excludes_and_releases(tmp_path: Path) -> None:
    held = acquire(tmp_path / "d", pid=4242)
    try:
        with pytest.raises(InstanceLocked, match=r"another keeper \(pid 4242\)") as e:
            acquire(tmp_path / "d", wait=0)
        assert e.value.pid == 4242
    finally:
        held.release()
    with acquire(tmp_path / "d", wait=0) as again:
        assert parse_pid((tmp_path / "d" / "keeper.lock").read_bytes()) == os.getpid()
        assert again.fd >= 0


def test_a_keeper_waits_for_one_that_is_still_exiting(tmp_path: Path) -> None:
    """The hand-over case: the old keeper lets go a moment after the new one starts."""
    old = acquire(tmp_path, pid=1)
    threading.Timer(0.5, old.release).start()
    began = time.monotonic()
    with acquire(tmp_path, wait=60):
        assert time.monotonic() - began >= 0.4


def test_a_refusal_writes_nothing_to_the_lock_file(tmp_path: Path) -> None:
    held = acquire(tmp_path, pid=123456)
    try:
        before = (tmp_path / "keeper.lock").read_bytes()
        with pytest.raises(InstanceLocked):
            acquire(tmp_path, wait=0.3)
        assert (tmp_path / "keeper.lock").read_bytes() == before
    finally:
        held.release()


def test_a_lock_held_by_another_process_goes_with_it(tmp_path: Path) -> None:
    code = (
        "import sys, time; from nodekeeper.keeper.instance_lock import acquire; "
        f"acquire({str(tmp_path)!r}); print('locked', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(InstanceLocked, match=f"pid {holder.pid}"):
            acquire(tmp_path, wait=0)
        holder.kill()
        holder.wait(10)
        with acquire(tmp_path, wait=0):
            pass
    finally:
        finish(holder)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "pid"),
    [(b"1234\n", 1234), (b"1234\n" + b" " * 50, 1234), (b"", None), (b"abc\n", None),
     (b"-5\n", None), (b"0\n", None)],
)  # fmt: skip
def test_parse_pid(text: bytes, pid: int | None) -> None:
    assert parse_pid(text) == pid


def test_an_unusable_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    settings = fast_settings(tmp_path, program("hanger.py"), data_dir=str(tmp_path / "file" / "d"))
    config = tmp_path / "keeper.toml"
    config.write_bytes(tomli_w.dumps(settings).encode())
    done = subprocess.run([*NODEKEEPER, str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot create the lock file" in lines[0], done.stderr
