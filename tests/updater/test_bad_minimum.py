"""A node below a minimum that cannot work here takes the suggested version (issue 9):
a real control plane announces a broken 1.2.0 (its preflight fails) as the minimum and a
good 1.3.0 as suggested; a fresh keeper tries 1.2.0 once, remembers it failed, and ends on
1.3.0 in the same keeper process, whatever the rollout's percentage."""

from __future__ import annotations

import pytest

from .lab import PROCESS, Lab

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize("percent", [0, 100])
def test_fresh_node_with_bad_minimum_ends_on_the_suggested_version(
    lab: Lab, percent: float
) -> None:
    lab.publish("1.2.0", "broken_version")
    lab.publish("1.3.0")
    lab.admin.request("PUT", f"/v1/admin/processes/{PROCESS}/minimum", json={"version": "1.2.0"})
    lab.roll_out("1.3.0", percent)
    keeper = lab.start_keeper()
    lab.wait_running("1.3.0", timeout=90)
    # 1.2.0 was tried once; committing 1.3.0 then forgot it (the keeper never goes back).
    assert lab.log_text().count("→ 1.2.0") == 1
    assert "update of storagenode to 1.2.0 failed at preflight" in lab.log_text()
    assert "below the minimum 1.2.0, which failed on this node before" in lab.log_text()
    assert keeper.alive() and lab.keepers == [keeper]  # no restart was needed
