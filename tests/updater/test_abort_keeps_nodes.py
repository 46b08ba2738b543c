"""An aborted rollout, from the keeper's side (decision 078), in-process over the real
control plane (tests/updater/inprocess.py): the announcement stops offering the version
(no rollout, suggested back to the fleet's), and a node that already committed it keeps
it: the keeper's own decision says "ahead" and never goes back."""

from __future__ import annotations

import pytest

from nodekeeper.version.decision import AHEAD

from .inprocess import PROCESS, Rig, rig_fixture

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

rig = rig_fixture()


async def test_a_node_that_committed_an_aborted_version_keeps_it(rig: Rig) -> None:
    await rig.install_first("1.0.0")
    rig.release("1.0.1")  # a rollout at 100 %: this node takes it
    await rig.cycles(1)
    assert rig.journal()["current"] == "1.0.1", rig.describe()
    row = rig.admin.request("POST", f"/v1/admin/processes/{PROCESS}/rollout/abort")
    assert (row["state"], row["percent"]) == ("aborted", 0.0)

    await rig.cycles(3)

    journal = rig.journal()
    assert journal["current"] == "1.0.1" and not journal["inflight"], rig.describe()
    assert rig.node.started == ["1.0.0", "1.0.1"]  # not stopped, not downgraded
    assert rig.cycle.snapshot()["decision"]["code"] == AHEAD
    assert "not going backwards" in rig.cycle.snapshot()["decision"]["reason"]
