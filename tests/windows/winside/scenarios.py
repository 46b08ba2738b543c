"""Scenarios that exercise nodekeeper.platform.windows for real, inside Wine.

    python.exe scenarios.py NAME [shim]

Each scenario starts real processes (programs.py) through the Windows platform, looks at
them with Win32 calls, and prints one line `RESULT {json}` with what it saw. With
``shim`` the platform starts each node under a node shim, as a keeper under the launcher
does (decision 063): the same scenario must see the same tree, limits and exits. The pytest
side (test_platform_wine.py) makes the assertions, so a failure reads like any other.
Cleanup is in `finally` blocks: a failed scenario must not leave processes in the prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import win32api
import win32con
import win32job
import win32process

from nodekeeper.platform import LaunchSpec, Platform, ResourceLimits, current_platform
from nodekeeper.platform import windows_console as console
from nodekeeper.platform import windows_job as jobs
from nodekeeper.platform.shimmed import ShimOptions
from nodekeeper.platform.windows import ShimmedWindowsHandle, WindowsHandle, WindowsPlatform

PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "programs.py")
STILL_ACTIVE = 259
# Set from the command line: start nodes under a node shim.
SHIMMED = False


def node_platform() -> Platform:
    """The platform the scenario drives: the keeper's own, or one under a node shim
    anchored to this process (standing in for the launcher)."""
    return shim_platform() if SHIMMED else current_platform()


def shim_platform() -> WindowsPlatform:
    import tempfile
    from pathlib import Path

    state = Path(tempfile.mkdtemp(prefix="shim-state-"))
    return WindowsPlatform(ShimOptions(anchor_pid=os.getpid(), state_dir=state, stop_timeout=1.0))


def shim_pid(handle: object) -> int | None:
    return handle.attachment.shim_pid if isinstance(handle, ShimmedWindowsHandle) else None


def wine_version() -> str | None:
    """Wine's version, or None on real Windows (ntdll exports wine_get_version there)."""
    try:
        get = ctypes.CDLL("ntdll").wine_get_version
    except AttributeError:
        return None
    get.restype = ctypes.c_char_p
    return get().decode()


def alive(pid: int) -> bool:
    try:
        handle = win32api.OpenProcess(win32con.PROCESS_QUERY_INFORMATION, False, pid)
    except win32api.error:
        return False
    try:
        return win32process.GetExitCodeProcess(handle) == STILL_ACTIVE
    finally:
        handle.Close()


async def until_dead(pids: list[int], seconds: float) -> list[int]:
    """Waits up to ``seconds`` for every pid to exit; returns those still alive."""
    deadline = time.monotonic() + seconds
    while True:
        left = [pid for pid in pids if alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.05)


def spec(*args: str, limits: ResourceLimits | None = None) -> LaunchSpec:
    return LaunchSpec(
        argv=[sys.executable, PROGRAMS, *args],
        env=dict(os.environ),
        limits=limits or ResourceLimits(),
    )


async def first_line(handle: WindowsHandle | ShimmedWindowsHandle) -> list[str]:
    line = await asyncio.wait_for(handle.stdout.readline(), 30)
    return line.decode().split()


async def runtime() -> dict[str, Any]:
    """The runtime is complete: the project and every dependency import on Windows."""
    import importlib
    import platform

    modules = [
        "nodekeeper.cli", "nodekeeper.platform.windows", "fastapi", "uvicorn", "pydantic",
        "sqlalchemy", "psycopg", "cryptography.hazmat.primitives.asymmetric.ed25519",
        "httpx", "rich", "psutil", "prometheus_client", "platformdirs", "semver", "base58",
        "tomli_w", "win32service", "win32serviceutil", "servicemanager", "win32job",
    ]  # fmt: skip
    failed = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # report every failure, not just the first
            failed[name] = repr(exc)
    return {
        "version": list(sys.version_info[:3]),
        "platform": platform.platform(),
        "executable": sys.executable,
        "failed_imports": failed,
        "platform_name": current_platform().name,
        "wine": wine_version(),
    }


async def tree_kill() -> dict[str, Any]:
    platform = node_platform()
    handle = await platform.start(spec("tree"))
    assert isinstance(handle, WindowsHandle | ShimmedWindowsHandle)
    try:
        _, node, grandchild = await first_line(handle)
        pids = [int(node), int(grandchild)]
        in_job = sorted(jobs.process_ids(handle.job))
        platform.kill_tree(handle)
        code = await asyncio.wait_for(handle.wait(), 10)
        survivors = await until_dead(pids, 5)
        return {"pids": pids, "in_job": in_job, "code": code, "survivors": survivors,
                "returncode": handle.returncode, "usage_after": platform.usage(handle),
                "shim": shim_pid(handle)}  # fmt: skip
    finally:
        platform.kill_tree(handle)
        platform.release(handle)


async def kill_on_close() -> dict[str, Any]:
    """A keeper process starts a tree, then dies abruptly (TerminateProcess, the Windows
    kill -9): kill-on-close must take the node and its grandchild with it."""
    keeper = subprocess.Popen(
        [sys.executable, PROGRAMS, "keeper"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    try:
        assert keeper.stdout is not None
        words = keeper.stdout.readline().decode().split()  # keeper PID pids NODE GRANDCHILD
        node, grandchild = int(words[3]), int(words[4])
        alive_before = [alive(node), alive(grandchild)]
        started = time.monotonic()
        keeper.kill()  # TerminateProcess: no cleanup code runs in the keeper
        keeper.wait(10)
        survivors = await until_dead([node, grandchild], 10)
        return {"alive_before": alive_before, "survivors": survivors,
                "seconds": round(time.monotonic() - started, 2)}  # fmt: skip
    finally:
        keeper.kill()


async def limits() -> dict[str, Any]:
    """Affinity and priority read back from the processes; the job's limit structures
    read back from the job (Wine accepts them but reads back zeros)."""
    wanted = ResourceLimits(
        memory_hard_bytes=256 << 20, cpu_rate_percent=50.0, cpu_cores=(0,),
        below_normal_priority=True,
    )  # fmt: skip
    platform = node_platform()
    handle = await platform.start(spec("tree", limits=wanted))
    assert isinstance(handle, WindowsHandle | ShimmedWindowsHandle)
    try:
        _, node, grandchild = await first_line(handle)
        readings = {}
        for label, pid in (("node", int(node)), ("grandchild", int(grandchild))):
            proc = win32api.OpenProcess(win32con.PROCESS_QUERY_INFORMATION, False, pid)
            readings[label] = {
                "priority": win32process.GetPriorityClass(proc),
                "affinity": win32process.GetProcessAffinityMask(proc)[0],
                "in_job": bool(win32job.IsProcessInJob(proc, handle.job)),
            }
            proc.Close()
        extended = jobs.query_extended_limits(handle.job)
        return {
            "report": handle.limits.as_dict(),
            "describe": platform.describe_limits(wanted).as_dict(),
            "readings": readings,
            "job_limit_flags": extended["BasicLimitInformation"]["LimitFlags"],
            "job_memory_limit": extended["JobMemoryLimit"],
            "job_cpu_rate": jobs.query_cpu_rate(handle.job),
            "expected": jobs.job_limits(wanted, os.cpu_count() or 1).__dict__,
            # The keeper's handle to a shim's job is for reading and killing only.
            "cpu_rate_error": None if SHIMMED else jobs.set_cpu_rate(handle.job, 5000),
            "cpu_count": os.cpu_count(),
            "describe_some_missing": platform.describe_limits(
                ResourceLimits(cpu_cores=(0, 63))
            ).as_dict(),
            "describe_all_missing": platform.describe_limits(
                ResourceLimits(cpu_cores=(63,))
            ).as_dict(),
            "wine": wine_version(),
        }
    finally:
        platform.kill_tree(handle)
        platform.release(handle)


async def no_console() -> dict[str, Any]:
    """A keeper without any console (DETACHED_PROCESS, like a service) starts a node."""
    keeper = subprocess.run(
        [sys.executable, PROGRAMS, "no_console_keeper"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        creationflags=win32process.DETACHED_PROCESS,
        timeout=60,
    )
    words = keeper.stdout.decode().split()
    return {"code": keeper.returncode, "words": words, "stderr": keeper.stderr.decode()}


async def usage() -> dict[str, Any]:
    platform = node_platform()
    handle = await platform.start(spec("hog", "120", "1.0"))
    try:
        words = await first_line(handle)
        before = platform.usage(handle)
        idle = await asyncio.wait_for(handle.stdout.readline(), 60)  # after the busy loop
        after = platform.usage(handle)
        return {"ready": words, "idle": idle.decode().strip(),
                "before": before.__dict__ if before else None,
                "after": after.__dict__ if after else None}  # fmt: skip
    finally:
        platform.kill_tree(handle)
        await handle.wait()
        platform.release(handle)


async def graceful_stop() -> dict[str, Any]:
    platform = current_platform()
    handle = await platform.start(spec("break"))
    try:
        await first_line(handle)
        sent = platform.request_stop(handle)
        error = console.send_break(handle.pid)[1]
        try:
            # A node that got the event exits at once; one that did not keeps running, and
            # a second is plenty to see that.
            code: int | None = await asyncio.wait_for(handle.wait(), 5 if sent else 1)
        except TimeoutError:
            code = None
        rest = (await handle.stdout.read()).decode() if code is not None else ""
        still_running = handle.returncode is None
        platform.kill_tree(handle)
        killed_code = await asyncio.wait_for(handle.wait(), 10)
        return {"sent": sent, "error": error, "code": code, "output": rest,
                "still_running": still_running, "killed_code": killed_code,
                "has_console": console.has_console(), "wine": wine_version()}  # fmt: skip
    finally:
        platform.kill_tree(handle)
        platform.release(handle)


async def pipes() -> dict[str, Any]:
    platform = node_platform()
    handle = await platform.start(spec("echo"))
    try:
        out, err = await asyncio.gather(handle.stdout.read(), handle.stderr.read())
        code = await asyncio.wait_for(handle.wait(), 10)
        return {"stdout": out.decode(), "stderr": err.decode(), "code": code,
                "usage_after_exit": platform.usage(handle)}  # fmt: skip
    finally:
        platform.release(handle)
        platform.release(handle)  # idempotent


async def start_failure() -> dict[str, Any]:
    try:
        await node_platform().start(
            LaunchSpec(argv=["C:\\no\\such\\node.exe"], env=dict(os.environ))
        )
    except OSError as exc:
        return {"raised": type(exc).__name__, "message": str(exc)}
    return {"raised": None}


async def kill_leftover() -> dict[str, Any]:
    platform = node_platform()
    handle = await platform.start(spec("tree"))
    try:
        _, node, grandchild = await first_line(handle)
        identity = json.loads(json.dumps(handle.identity()))  # as the state file holds it
        recycled = {**identity, "job": "nodekeeper-no-such-job", "create_time": 1.0}
        wrong_os = {**identity, "platform": "posix"}
        killed_recycled = platform.kill_leftover(recycled)
        killed_wrong_os = platform.kill_leftover(wrong_os)
        alive_after_mismatch = [alive(int(node)), alive(int(grandchild))]
        killed = platform.kill_leftover(identity)
        shim = [shim_pid(handle)] if SHIMMED else []
        survivors = await until_dead([int(node), int(grandchild), *shim], 5)
        by_pid = {**identity, "job": "nodekeeper-no-such-job"}
        return {"identity": identity, "killed_recycled": killed_recycled, "shim": shim_pid(handle),
                "killed_wrong_os": killed_wrong_os, "alive_after_mismatch": alive_after_mismatch,
                "killed": killed, "survivors": survivors,
                "killed_again": platform.kill_leftover(by_pid)}  # fmt: skip
    finally:
        platform.kill_tree(handle)
        platform.release(handle)


def _shim_spec(argv: list[str], anchor: int, tag: str) -> Any:
    import tempfile

    from nodekeeper.nodeshim import protocol

    work = tempfile.mkdtemp(prefix="shim-")
    return protocol.ShimSpec(
        argv=argv,
        env=dict(os.environ),
        cwd=work,
        address=protocol.new_address(tag),
        authkey_hex=os.urandom(16).hex(),
        anchor_pid=anchor,
        stop_timeout=1.0,
        log_path=os.path.join(work, "shim.log"),
    ), work


async def shim_relay() -> dict[str, Any]:
    """The node shim on Windows (decision 063): started detached, the node's lines come
    over a named pipe in order, then its exit code; the shim leaves after delivering it."""
    from pathlib import Path

    from nodekeeper.platform.shim_client import attach, start_shim

    code = "import sys\nfor n in range(500): print(f'line {n}', flush=True)\nsys.exit(3)"
    spec, work = _shim_spec([sys.executable, "-c", code], os.getpid(), "relay")
    started = start_shim(spec, Path(work) / "spec.json")
    a = await attach(started.address, started.authkey_hex, 1 << 20)
    lines = []
    while raw := await asyncio.wait_for(a.stdout.readline(), 30):
        lines.append(raw.decode().strip())
    exit_code = await a.wait()
    left = await until_dead([started.shim_pid], 10)
    return {"address": spec.address, "lines": len(lines), "first": lines[:1],
            "node_start": a.node_start,
            "last": lines[-1:], "in_order": lines == [f"line {n}" for n in range(500)],
            "code": exit_code, "shim_left": not left,
            "spec_removed": not os.path.exists(os.path.join(work, "spec.json"))}  # fmt: skip


async def shim_anchor() -> dict[str, Any]:
    """When the anchor (the launcher) ends, the shim ends the node (on Windows, for now,
    by killing it after the stop timeout: no console for CTRL_BREAK yet) and leaves."""
    from pathlib import Path

    from nodekeeper.platform.shim_client import attach, start_shim

    launcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    loop = "import time\nwhile True: print('alive', flush=True); time.sleep(0.05)"
    spec, work = _shim_spec([sys.executable, "-c", loop], launcher.pid, "anchor")
    started = start_shim(spec, Path(work) / "spec.json")
    try:
        a = await attach(started.address, started.authkey_hex, 1 << 20)
        first = (await asyncio.wait_for(a.stdout.readline(), 30)).decode().strip()
        # The node runs until the end: its start time as Windows reports it, against the
        # shim's (pywin32 gives a datetime, the shim the FILETIME: 100 ns since 1601).
        node = win32api.OpenProcess(win32con.PROCESS_QUERY_INFORMATION, False, a.node_pid)
        created = win32process.GetProcessTimes(node)["CreationTime"]
        filetime = created.timestamp() * 10_000_000 + 116_444_736_000_000_000
        start_off = abs(a.node_start - filetime) / 10_000_000  # seconds
        launcher.kill()
        code = await asyncio.wait_for(a.wait(), 30)
        left = await until_dead([started.node_pid, started.shim_pid], 10)
        return {"first": first, "code": code, "left": left, "start_off": start_off}
    finally:
        launcher.kill()
        for pid in (started.node_pid, started.shim_pid):
            with contextlib.suppress(Exception):
                handle = win32api.OpenProcess(win32con.PROCESS_TERMINATE, False, pid)
                win32api.TerminateProcess(handle, 1)


async def shim_killed() -> dict[str, Any]:
    """A shim ended by TerminateProcess takes its node along: the job it holds closes."""
    from pathlib import Path

    from nodekeeper.platform.shim_client import SHIM_GONE_CODE, attach, start_shim

    # The node ignores a broken pipe: only the job may end it, not its output closing.
    loop = (
        "import time\nwhile True:\n    try: print('alive', flush=True)\n"
        "    except OSError: pass\n    time.sleep(0.05)"
    )
    spec, work = _shim_spec([sys.executable, "-c", loop], os.getpid(), "killed")
    started = start_shim(spec, Path(work) / "spec.json")
    try:
        a = await attach(started.address, started.authkey_hex, 1 << 20)
        first = (await asyncio.wait_for(a.stdout.readline(), 30)).decode().strip()
        handle = win32api.OpenProcess(win32con.PROCESS_TERMINATE, False, started.shim_pid)
        win32api.TerminateProcess(handle, 9)
        code = await asyncio.wait_for(a.wait(), 30)
        left = await until_dead([started.node_pid], 10)
        with open(spec.log_path, encoding="utf-8") as f:
            shim_log = f.read()
        return {"first": first, "code": code, "shim_gone_code": SHIM_GONE_CODE,
                "node_left": left, "shim_log": shim_log}  # fmt: skip
    finally:
        with contextlib.suppress(Exception):
            handle = win32api.OpenProcess(win32con.PROCESS_TERMINATE, False, started.node_pid)
            win32api.TerminateProcess(handle, 1)


async def shim_graceful() -> dict[str, Any]:
    """The keeper's `stop` op: the shim, on the node's console, sends CTRL_BREAK. Wine's
    console implements only CTRL_C_EVENT (see test_graceful_stop), so there the node must
    simply keep running, never be terminated by a fallback, and the shim says why."""
    from pathlib import Path

    from nodekeeper.platform.shim_client import attach, start_shim

    node = (
        "import signal, sys, time\n"
        "def stop(*_):\n    print('stopping', flush=True)\n    sys.exit(0)\n"
        "signal.signal(signal.SIGBREAK, stop)\n"
        "while True:\n    print('alive', flush=True)\n    time.sleep(0.05)"
    )
    spec, work = _shim_spec([sys.executable, "-c", node], os.getpid(), "graceful")
    started = start_shim(spec, Path(work) / "spec.json")
    try:
        a = await attach(started.address, started.authkey_hex, 1 << 20)
        first = (await asyncio.wait_for(a.stdout.readline(), 30)).decode().strip()
        asked = a.request_stop()
        lines: list[str] = []
        still_running = None
        if wine_version():
            # Alive well after the request: 40 more lines at 20 a second.
            while len(lines) < 40:
                lines.append((await asyncio.wait_for(a.stdout.readline(), 30)).decode().strip())
            still_running = alive(started.node_pid)
            code = None
        else:
            while raw := await asyncio.wait_for(a.stdout.readline(), 30):
                lines.append(raw.decode().strip())
            code = await asyncio.wait_for(a.wait(), 30)
        with open(spec.log_path, encoding="utf-8") as f:
            shim_log = f.read()
        return {"first": first, "asked": asked, "last": lines[-1:], "code": code,
                "still_running": still_running, "wine": wine_version(),
                "shim_log": shim_log}  # fmt: skip
    finally:
        for pid in (started.node_pid, started.shim_pid):
            with contextlib.suppress(Exception):
                handle = win32api.OpenProcess(win32con.PROCESS_TERMINATE, False, pid)
                win32api.TerminateProcess(handle, 1)


async def shim_adopt() -> dict[str, Any]:
    """A keeper hand-over on Windows: keeper A's platform starts a node (with limits)
    under a shim and detaches; keeper B's platform adopts it from A's record. The node
    keeps running (same pid), its counted lines continue across the two keepers with
    none lost or repeated, B reads its usage and kills its tree through the job by name,
    and records that do not match are refused."""
    from nodekeeper.platform.base import AdoptionRefused

    wanted = ResourceLimits(memory_hard_bytes=256 << 20, cpu_cores=(0,), below_normal_priority=True)
    counter = (
        "import time\nn = 0\n"
        "while True:\n    print(n, flush=True)\n    n += 1\n    time.sleep(0.002)"
    )
    first = shim_platform()
    handle = await first.start(
        LaunchSpec(argv=[sys.executable, "-c", counter], env=dict(os.environ), limits=wanted,
                   name="adopt")
    )  # fmt: skip
    assert isinstance(handle, ShimmedWindowsHandle)
    seen: list[int] = []
    second_handle = None
    try:
        while len(seen) < 200:
            seen.append(int(await asyncio.wait_for(handle.stdout.readline(), 30)))
        record = json.loads(json.dumps(handle.identity()))  # as node.json holds it
        detached = await asyncio.to_thread(handle.detach)
        before_drain = len(seen)
        while raw := await handle.stdout.readline():  # what A got before the detach
            seen.append(int(raw))
        drained = len(seen) - before_drain
        first.release(handle)
        await asyncio.sleep(0.3)  # the node writes on, into the shim's backlog
        second = shim_platform()
        refused = {}
        for label, bad in (
            ("pid reused", {**record, "shim": {**record["shim"], "node_start": 1}}),
            ("no job", {**record, "job": "nodekeeper-no-such-job"}),
            ("posix", {**record, "platform": "posix"}),
        ):
            try:
                await second.adopt(bad)
                refused[label] = None
            except AdoptionRefused as exc:
                refused[label] = str(exc)
        second_handle = await second.adopt(record)
        assert isinstance(second_handle, ShimmedWindowsHandle)
        while len(seen) < 600:
            seen.append(int(await asyncio.wait_for(second_handle.stdout.readline(), 30)))
        node = win32api.OpenProcess(win32con.PROCESS_QUERY_INFORMATION, False, second_handle.pid)
        readings = {
            "priority": win32process.GetPriorityClass(node),
            "affinity": win32process.GetProcessAffinityMask(node)[0],
            "in_job": bool(win32job.IsProcessInJob(node, second_handle.job)),
        }
        node.Close()
        usage = second.usage(second_handle)
        second.kill_tree(second_handle)
        while await asyncio.wait_for(second_handle.stdout.readline(), 30):
            pass
        code = await asyncio.wait_for(second_handle.wait(), 10)
        left = await until_dead([second_handle.pid, second_handle.attachment.shim_pid], 10)
        return {
            "detached": detached, "pid_a": handle.pid, "pid_b": second_handle.pid,
            "in_order": seen == list(range(len(seen))), "lines": len(seen),
            "first_gap": next(
                (seen[max(0, i - 3) : i + 3] for i, n in enumerate(seen) if n != i), None
            ),
            "refused": refused, "readings": readings, "drained": drained,
            "next_seq": handle.attachment.next_seq,
            "usage": usage.__dict__ if usage else None, "code": code, "left": left,
            "limits_b": second_handle.limits.as_dict(), "limits_a": handle.limits.as_dict(),
        }  # fmt: skip
    finally:
        # The shim's end closes the job, which takes the node (whatever failed above).
        with contextlib.suppress(Exception):
            shim = win32api.OpenProcess(win32con.PROCESS_TERMINATE, False, shim_pid(handle))
            win32api.TerminateProcess(shim, 1)


async def firewall() -> dict[str, Any]:
    """The firewall check under Wine: winside/firewall_side.py (the runtime's ._pth keeps
    this directory off sys.path, so it is run by path)."""
    import runpy

    here = os.path.dirname(os.path.abspath(__file__))
    return await runpy.run_path(os.path.join(here, "firewall_side.py"))["scenario"]()


SCENARIOS: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
    "runtime": runtime,
    "tree_kill": tree_kill,
    "kill_on_close": kill_on_close,
    "limits": limits,
    "usage": usage,
    "graceful_stop": graceful_stop,
    "no_console": no_console,
    "pipes": pipes,
    "start_failure": start_failure,
    "kill_leftover": kill_leftover,
    "shim_relay": shim_relay,
    "shim_anchor": shim_anchor,
    "shim_killed": shim_killed,
    "shim_graceful": shim_graceful,
    "shim_adopt": shim_adopt,
    "firewall": firewall,
}

if __name__ == "__main__":
    SHIMMED = sys.argv[2:] == ["shim"]
    result = asyncio.run(SCENARIOS[sys.argv[1]]())
    print("RESULT " + json.dumps(result, default=repr), flush=True)
