"""Small purpose-written programs the Windows tests run as the "node" (inside Wine).

    python.exe programs.py MODE [ARGS]

Every mode prints one line saying what it is and which pids it made, then waits to be
stopped; the test side reads that line from the pipe.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)


def spawn(*args: str) -> subprocess.Popen[bytes]:
    # Plain subprocess, as a node's own helper would: it must land in the node's job.
    return subprocess.Popen([sys.executable, HERE, *args], stdin=subprocess.DEVNULL)


def say(*words: object) -> None:
    print(*words, flush=True)


def tree() -> None:
    """The node with one grandchild."""
    grandchild = spawn("sleep")
    say("pids", os.getpid(), grandchild.pid)
    time.sleep(120)


def hog(megabytes: str, seconds: str) -> None:
    """Commits and touches memory, burns ``seconds`` of CPU, then idles."""
    grandchild = spawn("sleep")
    block = b"\x01" * (int(megabytes) << 20)
    say("ready", os.getpid(), grandchild.pid, len(block))
    # CPU seconds, not wall seconds: on a loaded machine the loop still uses exactly this.
    end = time.process_time() + float(seconds)
    while time.process_time() < end:
        pass
    say("idle")
    time.sleep(120)


def on_break() -> None:
    """Stops cleanly (exit 7) on CTRL_BREAK_EVENT, as a well-behaved node does."""

    def handler(signum: int, frame: object) -> None:
        say("got break", signum)
        sys.exit(7)

    signal.signal(signal.SIGBREAK, handler)
    say("ready", os.getpid())
    time.sleep(60)
    say("no break came")


def echo() -> None:
    say("to stdout")
    print("to stderr", file=sys.stderr, flush=True)
    sys.exit(3)


def keeper() -> None:
    """A stand-in keeper: starts a node tree under the Windows platform and then waits,
    so that the test can kill it abruptly and watch the tree die with it."""
    from nodekeeper.platform import LaunchSpec, current_platform

    async def main() -> None:
        spec = LaunchSpec(argv=[sys.executable, HERE, "tree"], env=dict(os.environ))
        handle = await current_platform().start(spec)
        line = await handle.stdout.readline()
        say("keeper", os.getpid(), line.decode().strip())
        await asyncio.sleep(120)

    asyncio.run(main())


def no_console_keeper() -> None:
    """Run with DETACHED_PROCESS: a keeper with no console at all, as a service is. It must
    get one (hidden) before starting the node, or CTRL_BREAK could never reach the node."""
    from nodekeeper.platform import LaunchSpec, current_platform
    from nodekeeper.platform import windows_console as console

    before = console.has_console()

    async def main() -> None:
        platform = current_platform()
        spec = LaunchSpec(argv=[sys.executable, HERE, "tree"], env=dict(os.environ))
        handle = await platform.start(spec)
        line = (await handle.stdout.readline()).decode().split()
        say("console", before, console.has_console(), "node", *line[1:])
        platform.kill_tree(handle)
        await handle.wait()
        platform.release(handle)

    asyncio.run(main())


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "sleep":
        time.sleep(120)
    else:
        modes = {"tree": tree, "hog": hog, "break": on_break, "echo": echo, "keeper": keeper}
        modes["no_console_keeper"] = no_console_keeper
        modes[mode](*rest)
