"""The node shim as a real process (decision 063): a stand-in node writes numbered lines;
keepers attach, detach and attach again; the shim's anchor dies; the shim is killed.

What must hold: every line reaches exactly one keeper, whole and in order; the exit code
reaches the keeper after the last line; the node never outlives the shim or its anchor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from nodekeeper.nodeshim import protocol
from nodekeeper.platform.shim_client import NotTheNode, ShimError, Started, attach, start_shim

pytestmark = pytest.mark.timeout(60)

COUNTER = Path(__file__).parent / "programs" / "counter.py"
LIMIT = 1024 * 1024


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def shims(tmp_path: Path) -> Iterator[Callable[..., Started]]:
    """Start shims; every shim and node still alive at the end is killed."""
    started: list[Started] = []

    def start(argv: list[str], anchor: int | None = None, stop_timeout: float = 5.0) -> Started:
        n = len(started)
        spec = protocol.ShimSpec(
            argv=argv,
            env=dict(os.environ),
            cwd=str(tmp_path),
            address=protocol.new_address("test"),
            authkey_hex=os.urandom(16).hex(),
            anchor_pid=os.getpid() if anchor is None else anchor,
            stop_timeout=stop_timeout,
            log_path=str(tmp_path / f"shim-{n}.log"),
        )
        s = start_shim(spec, tmp_path / f"shim-{n}.json")
        started.append(s)
        return s

    yield start
    for s in started:
        for pid in (s.node_pid, s.shim_pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


def counter(count: int, interval: float, code: int = 0) -> list[str]:
    return [sys.executable, str(COUNTER), str(count), str(interval), str(code)]


async def read_lines(stream: asyncio.StreamReader, until: Callable[[str], bool]) -> list[str]:
    lines = []
    while True:
        raw = await asyncio.wait_for(stream.readline(), 20)
        if not raw:
            return lines
        lines.append(raw.decode().rstrip("\n"))
        if until(lines[-1]):
            return lines


def numbers(lines: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in lines if line.startswith("line ")]


def test_lines_in_order_then_the_exit_code_and_the_shim_leaves(
    shims: Callable[..., Started],
) -> None:
    s = shims(counter(2000, 0, code=3))

    async def scenario() -> tuple[list[str], list[str], int]:
        a = await attach(s.address, s.authkey_hex, LIMIT)
        out = await read_lines(a.stdout, lambda _: False)
        err = await read_lines(a.stderr, lambda _: False)
        return out, err, await a.wait()

    out, err, code = asyncio.run(scenario())
    assert numbers(out) == list(range(2000))
    assert err == [f"err {n}" for n in range(0, 2000, 10)]
    assert code == 3
    wait_until(lambda: gone(s.shim_pid), 10, "the shim to leave once the exit was delivered")


def test_a_hand_over_loses_and_repeats_no_line(shims: Callable[..., Started]) -> None:
    """Keeper A reads, detaches; the node writes on while nobody is attached; keeper B
    attaches and reads the rest. A's lines and B's lines together: each once, in order."""
    s = shims(counter(0, 0.001))

    async def scenario() -> tuple[list[int], list[int], int]:
        a = await attach(s.address, s.authkey_hex, LIMIT)
        first = await read_lines(a.stdout, lambda line: line == "line 300")
        assert await asyncio.to_thread(a.detach)
        # What the shim sent before its answer is queued on the loop ahead of this.
        a.end_output()
        seen_by_a = numbers(first + await read_lines(a.stdout, lambda _: False))
        assert a.returncode is None and not gone(s.node_pid)  # detached: the node runs on
        b = await attach(s.address, s.authkey_hex, LIMIT)
        assert (b.node_pid, b.node_start) == (s.node_pid, s.node_start)
        far = seen_by_a[-1] + 500
        rest = await read_lines(b.stdout, lambda line: line == f"line {far}")
        os.killpg(s.node_pid, signal.SIGTERM)
        rest += await read_lines(b.stdout, lambda _: False)
        return seen_by_a, numbers(rest), await b.wait()

    seen_by_a, seen_by_b, code = asyncio.run(scenario())
    assert code == 0
    assert seen_by_a and seen_by_b
    assert seen_by_a + seen_by_b == list(range(len(seen_by_a) + len(seen_by_b)))


def test_a_keeper_looking_for_another_node_takes_nothing_from_the_shim(
    shims: Callable[..., Started],
) -> None:
    """Adoption checks the record against the shim's node before the shim sends anything:
    a refused look takes no line from the backlog and does not displace the keeper that
    is attached."""
    s = shims(counter(0, 0.001))

    async def scenario() -> tuple[list[int], list[int], str]:
        a = await attach(s.address, s.authkey_hex, LIMIT)
        first = numbers(await read_lines(a.stdout, lambda line: line == "line 100"))
        wrong = {"node_pid": s.node_pid, "node_start": s.node_start + 1}
        with pytest.raises(NotTheNode) as refused:
            await attach(s.address, s.authkey_hex, LIMIT, expect=wrong)
        # A is still attached and gets every line that follows, none missing.
        more = numbers(await read_lines(a.stdout, lambda line: line == "line 400"))
        assert await asyncio.to_thread(a.detach)
        a.end_output()
        more += numbers(await read_lines(a.stdout, lambda _: False))
        right = {"node_pid": s.node_pid, "node_start": s.node_start}
        b = await attach(s.address, s.authkey_hex, LIMIT, expect=right)
        rest = numbers(await read_lines(b.stdout, lambda line: line == f"line {more[-1] + 50}"))
        return first + more, rest, str(refused.value)

    by_a, by_b, refusal = asyncio.run(scenario())
    assert f"the record says pid {s.node_pid}" in refusal
    assert by_a + by_b == list(range(len(by_a) + len(by_b)))


def test_the_node_outlives_a_keeper_that_dies_without_a_word(
    shims: Callable[..., Started],
) -> None:
    s = shims(counter(0, 0.01))
    keeper = subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncio, sys\n"
            "from nodekeeper.platform.shim_client import attach\n"
            "async def go():\n"
            f"    a = await attach({s.address!r}, {s.authkey_hex!r}, 1 << 20)\n"
            "    print((await a.stdout.readline()).decode(), end='', flush=True)\n"
            "    import os; os._exit(9)\n"
            "asyncio.run(go())\n",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert keeper.returncode == 9 and keeper.stdout.startswith("line ")
    assert not gone(s.node_pid) and not gone(s.shim_pid)

    async def next_keeper() -> int:
        b = await attach(s.address, s.authkey_hex, LIMIT)
        assert b.node_pid == s.node_pid
        await read_lines(b.stdout, lambda line: line.startswith("line "))
        os.killpg(s.node_pid, signal.SIGTERM)
        await read_lines(b.stdout, lambda _: False)
        return await b.wait()

    assert asyncio.run(next_keeper()) == 0


def test_when_the_anchor_ends_the_node_is_stopped_gracefully(
    shims: Callable[..., Started],
) -> None:
    launcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        s = shims(counter(0, 0.01), anchor=launcher.pid)

        async def scenario() -> tuple[list[str], int]:
            a = await attach(s.address, s.authkey_hex, LIMIT)
            await read_lines(a.stdout, lambda line: line.startswith("line "))
            launcher.kill()
            return await read_lines(a.stdout, lambda _: False), await a.wait()

        lines, code = asyncio.run(scenario())
    finally:
        launcher.kill()
        launcher.wait()
    assert lines[-1] == "stopping"  # SIGTERM first: the node's own graceful stop
    assert code == 0
    wait_until(lambda: gone(s.node_pid) and gone(s.shim_pid), 10, "node and shim gone")


def test_a_killed_shim_takes_the_node_along_and_says_so_as_sigkill(
    shims: Callable[..., Started],
) -> None:
    s = shims(counter(0, 0.01))

    async def scenario() -> int:
        a = await attach(s.address, s.authkey_hex, LIMIT)
        await read_lines(a.stdout, lambda line: line.startswith("line "))
        os.kill(s.shim_pid, signal.SIGKILL)
        return await a.wait()

    assert asyncio.run(scenario()) == -signal.SIGKILL
    wait_until(lambda: gone(s.node_pid), 10, "the node to die with its shim")


def test_a_program_that_cannot_start_is_an_oserror_naming_it(
    shims: Callable[..., Started], tmp_path: Path
) -> None:
    with pytest.raises(OSError, match="missing-program"):
        shims([str(tmp_path / "missing-program")])
    assert not list(tmp_path.glob("shim-*.json"))  # the spec (the node's env) is not left


def test_a_wrong_key_is_refused(shims: Callable[..., Started]) -> None:
    s = shims(counter(0, 0.01))

    async def scenario() -> None:
        with pytest.raises(ShimError, match="cannot attach"):
            await attach(s.address, os.urandom(16).hex(), LIMIT)
        a = await attach(s.address, s.authkey_hex, LIMIT)  # the right one still works
        assert a.node_pid == s.node_pid

    asyncio.run(scenario())


def test_the_keeper_asks_the_shim_for_the_graceful_stop(shims: Callable[..., Started]) -> None:
    """The `stop` op: the shim sends the node's graceful signal (on Windows only a process
    on the node's console can send CTRL_BREAK, so the shim does it everywhere)."""
    s = shims(counter(0, 0.01))

    async def scenario() -> tuple[tuple[str, ...], list[str], int]:
        a = await attach(s.address, s.authkey_hex, LIMIT)
        await read_lines(a.stdout, lambda line: line.startswith("line "))
        assert a.request_stop()
        return a.ops, await read_lines(a.stdout, lambda _: False), await a.wait()

    ops, lines, code = asyncio.run(scenario())
    assert "stop" in ops
    assert lines[-1] == "stopping" and code == 0
