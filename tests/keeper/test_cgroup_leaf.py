"""--delegated-cgroup (launcher/cgroupv2.py): a launcher whose cgroup is delegated moves into
a leaf of it, and keepers make the node's cgroup beside that leaf, where cgroup v2's "no
internal processes" rule lets the memory and cpu controllers be enabled. Real cgroups,
real processes; skipped where this process cannot make a cgroup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nodekeeper.launcher.cgroupv2 import find_mount, own_cgroup
from nodekeeper.launcher.protocol import ENV_NODE_CGROUP
from nodekeeper.platform import cgroup

MOUNT = find_mount()
OWN = own_cgroup(MOUNT) if MOUNT else None
pytestmark = pytest.mark.skipif(
    OWN is None or not os.access(OWN, os.W_OK), reason="no writable cgroup v2 here"
)

CHILD = """
import json, os, sys
from nodekeeper.launcher.cgroupv2 import settle_in_leaf
open(os.path.join(sys.argv[1], "cgroup.procs"), "w").write(str(os.getpid()))
root, why = settle_in_leaf()
print(json.dumps({"root": str(root) if root else None, "why": why,
                  "cgroup": open("/proc/self/cgroup").read()}))
"""


def test_the_launcher_moves_into_a_leaf_and_names_its_cgroup_for_the_nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert OWN is not None and MOUNT is not None
    unit = OWN / f"nodekeeper-test-unit-{os.getpid()}"  # stands in for the service's cgroup
    unit.mkdir()
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(unit)], capture_output=True, text=True, check=True
        )
        seen = json.loads(done.stdout)
        assert (seen["root"], seen["why"]) == (str(unit), "")
        moved_to = "/" + str((unit / "launcher").relative_to(MOUNT))
        assert f"0::{moved_to}\n" in seen["cgroup"]
        # The keeper, told where (ENV_NODE_CGROUP), makes the node's cgroup beside the leaf.
        monkeypatch.setenv(ENV_NODE_CGROUP, str(unit))
        assert cgroup.node_parent(MOUNT) == unit
        monkeypatch.delenv(ENV_NODE_CGROUP)
        assert cgroup.node_parent(MOUNT) == OWN
    finally:
        for path in (unit / "launcher", unit):
            if path.exists():
                path.rmdir()


def test_a_cgroup_it_cannot_write_changes_nothing_and_says_why() -> None:
    """Not root: the move is refused, the launcher stays where it is, and says why."""
    code = (
        "import json, os\nfrom nodekeeper.launcher.cgroupv2 import settle_in_leaf\n"
        "os.setegid(65534)\nos.seteuid(65534)\n"  # after the import: the venv is root's
        "before = open('/proc/self/cgroup').read()\nroot, why = settle_in_leaf()\n"
        "print(json.dumps([root, why, before == open('/proc/self/cgroup').read()]))"
    )
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to nobody")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    root, why, unchanged = json.loads(done.stdout)
    assert root is None and "cannot move into" in why and unchanged
