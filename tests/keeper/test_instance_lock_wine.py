"""The Windows branch of the data directory lock (msvcrt.locking), in the Windows runtime
under Wine: another process is refused and told the holder's pid (readable although the
lock is mandatory), and the lock goes with a process killed with TerminateProcess."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.windows.wine import (
    WineRuntime,
    windows_path,
    wine,  # noqa: F401 - the fixture
)

pytestmark = [pytest.mark.wine, pytest.mark.timeout(240)]

SCENARIO = r"""
import json, subprocess, sys
from nodekeeper.keeper.instance_lock import InstanceLocked, acquire

d = sys.argv[1]
TRY = (
    "import sys\nfrom nodekeeper.keeper.instance_lock import InstanceLocked, acquire\n"
    "try:\n    acquire(sys.argv[1], wait=0)\n    print('acquired')\n"
    "except InstanceLocked as e:\n    print('locked', e.pid)\n"
)
HOLD = (
    "import sys, time\nfrom nodekeeper.keeper.instance_lock import acquire\n"
    "acquire(sys.argv[1])\nprint('held', flush=True)\ntime.sleep(600)\n"
)
def other():
    done = subprocess.run([sys.executable, "-c", TRY, d], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    return done.stdout.strip()

seen = {}
held = acquire(d, pid=4242)
seen["other_while_held"] = other()
held.release()
seen["other_after_release"] = other()
holder = subprocess.Popen([sys.executable, "-c", HOLD, d], stdout=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, text=True)
seen["holder_said"] = holder.stdout.readline().strip()
try:
    acquire(d, wait=0)
    seen["while_holder_alive"] = "acquired"
except InstanceLocked as e:
    seen["while_holder_alive"] = f"locked {e.pid}"
seen["holder_pid"] = holder.pid
holder.kill()  # TerminateProcess: no cleanup in the holder
holder.wait(30)
after = acquire(d, wait=10)
seen["after_kill"] = "acquired"
after.release()
print("RESULT " + json.dumps(seen))
"""


def test_the_windows_lock_refuses_names_the_pid_and_dies_with_its_process(
    wine: WineRuntime,  # noqa: F811
    tmp_path: Path,
) -> None:
    script = tmp_path / "lock_scenario.py"
    script.write_text(SCENARIO)
    done = wine.run_script(script, windows_path(tmp_path / "data"), timeout=180)
    assert done.returncode == 0, done.output
    seen = done.result()
    assert seen["other_while_held"] == "locked 4242"
    assert seen["other_after_release"] == "acquired"
    assert seen["holder_said"] == "held"
    assert seen["while_holder_alive"] == f"locked {seen['holder_pid']}"
    assert seen["after_kill"] == "acquired"
