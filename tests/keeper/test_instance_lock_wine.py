"""The Windows branch of the data directory lock (msvcrt.locking), in the Windows runtime
under Wine: another process is refused and told the holder's pid (readable although the
lock is mandatory), and the lock goes with a process killed with TerminateProcess.

The scenario runs as steps; each prints a ``STEP {json}`` line as it ends, with what it
saw and how long it took, and the first step that fails (an exception, or a wait that ran
out) ends the scenario. So a failure names its step and its timings, also when the whole
run is cut short. Every wait is for the real condition (a line from the holder, the
holder's exit, the lock) with a deadline far above what it takes on a loaded machine
(measured: under 2 s for a process start, 0.03 s from the kill to a free lock); decision
037 says why.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.windows.wine import (
    WineRuntime,
    windows_path,
    wine,  # noqa: F401 - the fixture
)

# A step's deadline, and the whole scenario's: above the worst case of every step in turn.
STEP_SECONDS = 120
SCENARIO_SECONDS = 7 * STEP_SECONDS
pytestmark = [pytest.mark.wine, pytest.mark.timeout(SCENARIO_SECONDS + 120)]

SCENARIO = r"""
import json, queue, subprocess, sys, threading, time
from nodekeeper.keeper.instance_lock import InstanceLocked, acquire

d, STEP = sys.argv[1], float(sys.argv[2])
TRY = (
    "import sys\nfrom nodekeeper.keeper.instance_lock import InstanceLocked, acquire\n"
    "try:\n    acquire(sys.argv[1], wait=0)\n    print('acquired')\n"
    "except InstanceLocked as e:\n    print('locked', e.pid)\n"
)
HOLD = (
    "import sys, time\nfrom nodekeeper.keeper.instance_lock import acquire\n"
    "acquire(sys.argv[1])\nprint('held', flush=True)\ntime.sleep(600)\n"
)

class Failed(Exception):
    pass

def step(name, action):
    began = time.monotonic()
    try:
        value = action()
    except BaseException as exc:
        value, error = None, f"{type(exc).__name__}: {exc}"
    else:
        error = None
    saw = value if isinstance(value, (str, int, type(None))) else type(value).__name__
    row = {"step": name, "saw": saw, "error": error,
           "seconds": round(time.monotonic() - began, 3)}
    print("STEP " + json.dumps(row), flush=True)
    if error is not None:
        raise Failed(name)
    return value

def other():
    done = subprocess.run([sys.executable, "-c", TRY, d], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=STEP)
    return done.stdout.strip() or f"nothing (exit {done.returncode}): {done.stderr[-500:]}"

def first_line(proc):
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=STEP).strip()
    except queue.Empty:
        raise TimeoutError(f"no line within {STEP:g} s") from None

def try_now():
    try:
        acquire(d, wait=0).release()
        return "acquired"
    except InstanceLocked as e:
        return f"locked {e.pid}"

def kill_and_wait(proc):
    proc.kill()  # TerminateProcess: no cleanup in the holder
    return proc.wait(STEP)

holder = None
try:
    held = step("we_acquire", lambda: acquire(d, pid=4242))
    step("other_while_held", other)
    step("we_release", held.release)
    step("other_after_release", other)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, d], stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True)
    step("holder_pid", lambda: holder.pid)
    step("holder_said", lambda: first_line(holder))
    step("while_holder_alive", try_now)
    step("holder_killed", lambda: kill_and_wait(holder))
    # acquire polls the lock until it is free or the deadline passes: the real condition.
    after = step("after_kill", lambda: acquire(d, wait=STEP))
    after.release()
except Failed:
    pass
finally:
    if holder is not None and holder.poll() is None:
        holder.kill()
"""


def expected(steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    holder = steps.get("holder_pid", {}).get("saw")
    return {
        "we_acquire": "InstanceLock",
        "other_while_held": "locked 4242",
        "other_after_release": "acquired",
        "holder_said": "held",
        "while_holder_alive": f"locked {holder}",
        "after_kill": "InstanceLock",
    }


def report(rows: list[dict[str, Any]], output: str) -> str:
    lines = [
        f"  {r['step']}: saw {r['saw']!r} in {r['seconds']} s"
        + (f", error {r['error']}" if r["error"] else "")
        for r in rows
    ]
    return "steps:\n" + "\n".join(lines) + f"\noutput:\n{output}"


def test_the_windows_lock_refuses_names_the_pid_and_dies_with_its_process(
    wine: WineRuntime,  # noqa: F811
    tmp_path: Path,
) -> None:
    script = tmp_path / "lock_scenario.py"
    script.write_text(SCENARIO)
    args = (windows_path(tmp_path / "data"), str(STEP_SECONDS))
    try:
        done = wine.run_script(script, *args, timeout=SCENARIO_SECONDS)
        output, code = done.output, done.returncode
    except subprocess.TimeoutExpired as exc:
        output = (exc.output or b"").decode("utf-8", "replace").replace("\r\n", "\n")
        rows = [json.loads(ln[5:]) for ln in output.splitlines() if ln.startswith("STEP ")]
        raise AssertionError(
            f"the scenario did not end within {SCENARIO_SECONDS} s\n{report(rows, output)}"
        ) from None
    rows = [json.loads(ln[5:]) for ln in output.splitlines() if ln.startswith("STEP ")]
    steps = {r["step"]: r for r in rows}
    for row in rows:
        assert row["error"] is None, f"step {row['step']} failed\n{report(rows, output)}"
    for name, want in expected(steps).items():
        assert name in steps, f"step {name} never ran\n{report(rows, output)}"
        assert steps[name]["saw"] == want, (
            f"step {name}: expected {want!r}, saw {steps[name]['saw']!r}\n{report(rows, output)}"
        )
    assert code == 0, f"the scenario exited {code}\n{report(rows, output)}"
