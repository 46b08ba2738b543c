"""What gets a node disqualified, decided from what was seen (pure: no I/O, no clock).

The keeper looks at the node's storage directory, its disk, its identity and the clock
every few seconds (``keeper.storage_watch`` does the looking); these functions turn one
look into the problems the operator must hear about, each with the fix in words
(decision 070). A problem's ``kind`` is also its alert kind (``nodekeeper.alerts``) and,
with ``-`` for ``_``, its ``reason`` in the error index.

- **Storage missing** (hold the node): the directory is gone, not a directory, cannot
  be read, does not answer in time (a dead network share), or lacks the verification
  file ``storage-dir-verification`` that setup wrote, or holds another node's. The file
  is what tells an empty mount point (the USB disk fell off; the directory under it is
  still there) from the real storage. Every audit a node answers without its pieces
  counts against it, so the node is stopped at once instead (Storj disqualifies nodes
  that fail audits).
- **Disk nearly full**: under ``DISK_FREE_PERCENT`` % of the storage disk free.
- **Clock off**: this machine's clock differs from the control plane's ``Date`` header
  by more than ``CLOCK_TOLERANCE_SECONDS``.
- **Identity missing**: the node is set up (its config file is there) but its identity
  key is gone or unreadable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Literal

VERIFICATION_FILE = "storage-dir-verification"  # storagenode.storagedir: the same file
# Below this share of the storage disk free, the operator hears of it. The node stops
# taking uploads at its allocation, so a disk this full means something else is filling
# it (or the allocation is larger than the disk): the node's database and the pieces in
# flight are next to fail. 5 % leaves room to act on a disk of any size (on 1 TB, 50 GB).
DISK_FREE_PERCENT = 5.0
# A clock this far off is the machine's, not the network's: the Date header has a
# one-second resolution and a request's own delay is seconds, so 10 minutes is far above
# the noise, and far below where signed, time-limited messages (orders, TLS) start to
# fail for a node whose clock is off by hours.
CLOCK_TOLERANCE_SECONDS = 600.0

StorageState = Literal["ok", "missing", "not-dir", "unreadable", "timeout"]


@dataclass(frozen=True)
class Problem:
    """One problem for the operator: ``kind`` is the alert kind (``reason`` in the error
    index with ``-``), ``message`` what is wrong, ``fix`` what to do."""

    kind: str
    severity: Literal["warning", "error", "critical"]
    title: str
    message: str
    fix: str

    @property
    def reason(self) -> str:
        return self.kind.replace("_", "-")


@dataclass(frozen=True)
class StorageLook:
    """What one look at the storage directory saw. ``marker``: the verification file's
    bytes (None when it is missing); ``marker_error``: why it could not be read."""

    path: Path
    state: StorageState
    detail: str = ""
    marker: bytes | None = None
    marker_error: str | None = None
    free: int | None = None
    total: int | None = None


def marker_owner(marker: bytes) -> str:
    """The node the verification file names, as text: the reference node writes the
    node ID's text; a Storj node writes the raw ID bytes, shown here in hex."""
    try:
        text = marker.decode("ascii").strip()
    except UnicodeDecodeError:
        return marker.hex()
    return text if text.isprintable() else marker.hex()


def marker_matches(marker: bytes, node_id_text: str | None, node_id_raw: bytes | None) -> bool:
    """Whether the verification file is this node's. Unknown identity (unreadable key,
    reported on its own): any non-empty file counts, an empty one does not."""
    if node_id_text is None and node_id_raw is None:
        return bool(marker.strip())
    if node_id_raw is not None and marker == node_id_raw:
        return True
    return node_id_text is not None and marker_owner(marker) == node_id_text


def _storage_fix(path: Path, verb: str) -> str:
    return (
        f"{verb}; the keeper starts the node again by itself as soon as {path} is back "
        f"with its {VERIFICATION_FILE} file. If the storage moved for good, change "
        "storage_dir in the node's settings."
    )


def storage_problem(
    look: StorageLook, node_id_text: str | None, node_id_raw: bytes | None = None
) -> Problem | None:
    """The storage problem ``look`` shows, or None when the node may run."""
    path = look.path

    def missing(message: str, verb: str) -> Problem:
        return Problem(
            "storage_missing",
            "critical",
            "Storage directory missing: node stopped",
            f"{message}; the node was stopped so that it does not fail audits",
            _storage_fix(path, verb),
        )

    reconnect = "Reconnect or mount the disk (or network share) that holds it"
    if look.state == "missing":
        return missing(f"the storage directory {path} does not exist", reconnect)
    if look.state == "not-dir":
        return missing(f"the storage path {path} is not a directory", reconnect)
    if look.state == "unreadable":
        return missing(
            f"the storage directory {path} cannot be read ({look.detail})",
            "Check the disk behind it (cable, power, file system errors) and its permissions",
        )
    if look.state == "timeout":
        return missing(
            f"the storage directory {path} did not answer within {look.detail} "
            "(a disconnected network share or a failing disk)",
            "Check the network share or the disk behind it",
        )
    if look.marker_error is not None:
        return missing(
            f"the verification file {path / VERIFICATION_FILE} cannot be read "
            f"({look.marker_error})",
            "Check the disk behind it (cable, power, file system errors) and its permissions",
        )
    if look.marker is None:
        return missing(
            f"{path} has no {VERIFICATION_FILE} file: the disk set up for this node is not "
            "mounted there (an empty mount point?)",
            "Mount the node's disk at that path",
        )
    if not marker_matches(look.marker, node_id_text, node_id_raw):
        owner = marker_owner(look.marker) or "(an empty file)"
        return missing(
            f"{path} belongs to node {owner}, not to this node {node_id_text}",
            "Mount this node's disk at that path (another node's is there)",
        )
    return None


def disk_problem(
    free: int | None, total: int | None, path: Path, percent: float = DISK_FREE_PERCENT
) -> Problem | None:
    """A warning when less than ``percent`` % of the disk holding ``path`` is free.
    Unknown sizes (the look failed, or a file system that reports 0) say nothing."""
    if free is None or total is None or total <= 0:
        return None
    if free * 100 >= percent * total:
        return None
    return Problem(
        "disk_full",
        "error",
        "Disk nearly full",
        f"the disk holding {path} has {_size(free)} free of {_size(total)} "
        f"({free * 100 / total:.1f} %, under {percent:g} %)",
        "Free space on that disk (files other than the node's), or lower the node's "
        "allocation below what the disk can hold; the node stops taking uploads at its "
        "allocation, and a full disk can corrupt its database",
    )


def clock_offset(date_header: str | None, local_now: float) -> float | None:
    """``local_now`` minus the time in an HTTP ``Date`` header (seconds; positive: this
    machine is ahead), or None when the header is missing or not a date."""
    if not date_header:
        return None
    try:
        when: datetime = parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 5322's "UTC, source unknown"
        return None
    return local_now - when.timestamp()


def clock_problem(
    offset: float | None, server: str, tolerance: float = CLOCK_TOLERANCE_SECONDS
) -> Problem | None:
    """An error when the clock is off by more than ``tolerance`` seconds."""
    if offset is None or abs(offset) <= tolerance:
        return None
    way = "ahead of" if offset > 0 else "behind"
    return Problem(
        "clock_off",
        "error",
        "Clock is wrong",
        f"this machine's clock is {_duration(abs(offset))} {way} the control plane's ({server})",
        "Turn on automatic time synchronisation (Windows: Settings › Time & language › "
        "Set the time automatically; Linux: timedatectl set-ntp true) and check the time "
        "zone",
    )


IdentityState = Literal["ok", "missing", "unreadable", "not-set-up"]


def identity_problem(state: IdentityState, path: Path, detail: str = "") -> Problem | None:
    """An error when a node that is set up has lost its identity key. A node not set up
    yet has none either: that is the setup's business, not an alert."""
    if state in ("ok", "not-set-up"):
        return None
    what = "is missing" if state == "missing" else f"cannot be read ({detail})"
    return Problem(
        "identity_missing",
        "critical",
        "Node identity missing",
        f"the node's identity key {path} {what}: the node cannot start without it",
        f"Put the identity back from your backup (the folder with {path.name} that "
        "`storagenode setup` used); a new identity is a new node, which starts its "
        "reputation from zero",
    )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.0f} days"
