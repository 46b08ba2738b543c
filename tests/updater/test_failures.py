"""An old version that cannot be stopped during an update's switch, end to end (decision
062): it ignores SIGTERM and its shutdown endpoint hangs, so the supervisor's stop
timeout kills its process tree and the new version starts. A scripted node cannot show
this. The seed document's other failure cases around an update (download, preflight,
undeletable old version, out of space, node not set up, journal not writable, control
plane outage, Retry-After) are in-process: test_machine_failures.py and
test_cycle_checks.py."""

from __future__ import annotations

import pytest

from .lab import Lab

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_old_version_that_cannot_be_stopped_is_killed_and_replaced(lab: Lab) -> None:
    # 1.0.0 hangs 2 s after its first pulse: requests (the shutdown endpoint too) block
    # and SIGTERM is ignored. The probe threshold is high so the supervisor leaves it be
    # until the update's switch has to stop it.
    lab.config(probe={"failure_threshold": 10_000}, stop={"timeout_seconds": 2.0})
    lab.publish("1.0.0", "hang_after_start", hang_after=2, ignore_stop=True)
    lab.start_keeper()
    lab.wait_running("1.0.0")
    lab.wait(lambda: lab.pulse() is None, 10, "1.0.0 to hang")
    lab.release("1.0.1")
    lab.wait_running("1.0.1", timeout=40)
    [entry] = lab.entries("stop-timeout")
    assert "did not stop within 2 s" in entry["message"]
    assert "killing its process tree" in lab.log_text()
