"""cgroup v2 facts the launcher needs (stdlib only), shared with ``platform.cgroup``.

Under a systemd unit with ``Delegate=``, the unit's cgroup belongs to us, but cgroup v2
lets a cgroup either hold processes or pass controllers down to children, never both
(the "no internal processes" rule). So with ``--delegated-cgroup`` the launcher moves
itself into a leaf, ``<unit cgroup>/launcher``, before it starts any keeper (children are
born in their parent's cgroup, so every keeper and shim lands there too), and tells its
keepers to make the node's cgroup beside it (``ENV_NODE_CGROUP``), where the memory and
cpu controllers can then be enabled. This is systemd's documented pattern for delegated
units; systemd 254's ``DelegateSubgroup=`` does the same move itself.
"""

from __future__ import annotations

import os
from pathlib import Path

LEAF = "launcher"


def find_mount() -> Path | None:
    """The cgroup2 mount point (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return Path(left.split(" ")[4])
    except OSError:
        return None
    return None


def own_cgroup(mount: Path) -> Path | None:
    """This process's cgroup directory (the "0::" line of /proc/self/cgroup)."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("0::"):
                    rel = line[3:].strip().lstrip("/")
                    path = mount / rel if rel else mount
                    return path if path.is_dir() else None
    except OSError:
        return None
    return None


def settle_in_leaf(leaf: str = LEAF) -> tuple[Path | None, str]:
    """Move this process into ``<own cgroup>/<leaf>``; returns (own cgroup, "") for the
    nodes' cgroups, or (None, why) when it cannot (nothing is changed then)."""
    mount = find_mount()
    if mount is None:
        return None, "no cgroup v2 hierarchy is mounted"
    own = own_cgroup(mount)
    if own is None:
        return None, f"this process has no cgroup under {mount}"
    if own.name == leaf:  # already there (a launcher restarted in the same process tree)
        return own.parent, ""
    target = own / leaf
    try:
        target.mkdir(exist_ok=True)
        (target / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as exc:
        return None, f"cannot move into {target}: {exc} (is the unit's cgroup delegated?)"
    return own, ""
