"""What the launcher and the keeper it runs agree on: exit code, environment, file names.

This is an interface between two programs that update at different times: the launcher
comes with the installer, the keeper with every keeper release. A keeper reads these
names from its own copy of this module, so they must never change meaning; a new field
in a file is fine (both sides ignore keys they do not know), a new meaning needs a new
``FORMAT``.

Files, all under ``DATA_DIR/state/launcher/`` and each written whole (temp file, fsync,
``os.replace``) by exactly one side:

- ``state.json`` (launcher): current, previous and pending keeper versions, failed
  versions, and outcome records for the keeper to report (see ``launcher.decide``);
- ``request.json`` (keeper): ``{"format": 1, "version": "1.2.3", "at": <unix time>}``,
  the version the keeper wants to hand over to, honoured only together with the exit
  code ``EXIT_SELF_UPDATE``;
- ``delivered.json`` (keeper): ``{"format": 1, "ids": [...]}``, outcome ids it has turned
  into reports; the launcher drops those outcomes from ``state.json``;
- ``handback.json`` (launcher): ``{"format": 1, "pid": N}``, written just before it stops
  keeper N because that keeper failed its probation: the stop is a hand-back, so the
  keeper leaves the node running for the keeper the launcher falls back to (decision
  063). Keepers that do not know the file stop the node, as they always did.

Keeper versions are installed in ``DATA_DIR/versions/nodekeeper/<version>/`` (the
updater's layout), each with its ``nodekeeper-artifact.json``.
"""

from __future__ import annotations

from pathlib import Path

PROCESS = "nodekeeper"
FORMAT = 1

# EX_TEMPFAIL from sysexits.h: "try again", which is what the launcher does, with another
# version. Honoured only when request.json is there too, so a keeper that happens to exit
# 75 is treated as the crash it is.
EXIT_SELF_UPDATE = 75

STATE_FILE = "state.json"
REQUEST_FILE = "request.json"
DELIVERED_FILE = "delivered.json"
HANDBACK_FILE = "handback.json"

# Set by the launcher in the keeper's environment. Their presence is how a keeper knows
# it runs under a launcher (and may exit to update itself): a keeper started by hand
# that exited for an update would simply be gone.
ENV_STATE_DIR = "NODEKEEPER_LAUNCHER_STATE_DIR"
ENV_VERSIONS_DIR = "NODEKEEPER_LAUNCHER_VERSIONS_DIR"
ENV_RUNNING = "NODEKEEPER_LAUNCHER_RUNNING"  # the version it was started as; "" = runtime's
# The launcher's own pid: what the node's shim watches (decision 063). Said rather than
# asked: os.getppid() on Windows needs PssCaptureSnapshot, which Wine lacks, and a
# wrapper between the two would make the parent someone else.
ENV_LAUNCHER_PID = "NODEKEEPER_LAUNCHER_PID"
# Windows: the name of the event the launcher sets to ask its keeper to stop. There is no
# SIGTERM, and CTRL_BREAK needs a console shared with the keeper, which a service does
# not reliably have (and Wine cannot deliver); an event works in every session.
ENV_STOP_EVENT = "NODEKEEPER_STOP_EVENT"
# Linux, under a unit with a delegated cgroup (--delegated-cgroup): the cgroup in which
# keepers make the node's cgroup, the launcher and keepers being in a leaf of it.
ENV_NODE_CGROUP = "NODEKEEPER_NODE_CGROUP_PARENT"


def state_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "state" / "launcher"


def versions_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "versions" / PROCESS
