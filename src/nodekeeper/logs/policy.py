"""Pure decisions of the log writer: names, when to rotate, what to delete, what to compress.

No I/O here. The directory shell (``directory.py``) and the writer (``rotating.py``) ask
these functions and then act, so every rule is tested exhaustively without files.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# A log's name becomes part of file names and of the archive pattern below, so it is
# kept to characters that are safe on every file system and never contain the dots
# the pattern splits on.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SUFFIX_PATTERN = re.compile(r"^\.[a-z0-9]{1,8}$")

# storagenode.20261127T063419Z.000042.log[.gz[.tmp]]: the UTC second it was closed, for
# people and for retention; a sequence number, because a flood rotates many times a
# second and because the clock may step back.
_ARCHIVE = re.compile(
    r"^(?P<base>[A-Za-z0-9_-]{1,64})\.(?P<stamp>\d{8}T\d{6}Z)\.(?P<seq>\d{6,})"
    r"(?P<suffix>\.[a-z0-9]{1,8})(?P<gz>\.gz)?(?P<tmp>\.tmp)?$"
)
_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"

Kind = Literal["plain", "gzip", "partial"]


@dataclass(frozen=True)
class ArchiveName:
    """What a rotated file's name says about it."""

    base: str
    closed_at: int  # UTC second the file was rotated: the time of its newest line
    seq: int
    suffix: str
    kind: Kind  # plain: rotated, not compressed yet; gzip: done; partial: .gz.tmp


def archive_filename(base: str, suffix: str, closed_at: float, seq: int) -> str:
    stamp = dt.datetime.fromtimestamp(int(closed_at), dt.UTC).strftime(_STAMP_FORMAT)
    return f"{base}.{stamp}.{seq:06d}{suffix}"


def parse_archive_filename(filename: str) -> ArchiveName | None:
    match = _ARCHIVE.match(filename)
    if not match:
        return None
    if match["tmp"] and not match["gz"]:
        return None
    try:
        stamp = dt.datetime.strptime(match["stamp"], _STAMP_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    kind: Kind = "partial" if match["tmp"] else "gzip" if match["gz"] else "plain"
    return ArchiveName(
        match["base"], int(stamp.timestamp()), int(match["seq"]), match["suffix"], kind
    )


# -- rotation ----------------------------------------------------------------------------

RotationReason = Literal["size", "day"]


def rotation_reason(
    size: int, incoming: int, max_size: int, now: float, day_ends_at: float
) -> RotationReason | None:
    """Rotate before a line that would push the file past ``max_size``, or at the first
    line of a new day. An empty file never rotates: a line longer than the limit is
    written whole rather than split or dropped, and a new day needs no empty archive."""
    if size <= 0:
        return None
    if size + incoming > max_size:
        return "size"
    if now >= day_ends_at:
        return "day"
    return None


def next_local_midnight(ts: float) -> float:
    """The UNIX time of the first local midnight after ``ts`` (DST-safe: asks the OS)."""
    tm = time.localtime(ts)
    # mktime normalises day overflow and, with isdst=-1, picks the right offset.
    return time.mktime((tm.tm_year, tm.tm_mon, tm.tm_mday + 1, 0, 0, 0, 0, 0, -1))


def day_end_for(ts: float, rotate_daily: bool) -> float:
    return next_local_midnight(ts) if rotate_daily else math.inf


def retry_delay(failures: int, first: float = 0.1, longest: float = 10.0) -> float:
    """Backoff before trying again a rename or delete that failed ``failures`` times."""
    if failures <= 0:
        return 0.0
    return min(longest, first * 2 ** (failures - 1))


# -- what to delete ----------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """An archive the cap or retention may delete. ``busy`` marks the one being compressed:
    it cannot go while the compressor holds it, and nothing newer may go before it."""

    name: str
    closed_at: float
    seq: int
    size: int
    busy: bool = False


@dataclass(frozen=True)
class Eviction:
    delete: tuple[str, ...]
    fits: bool  # after the deletions, used + incoming <= cap
    cancel: str | None = None  # the busy file that must stop compressing to make room


def oldest_first(candidates: Sequence[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: (c.closed_at, c.seq, c.name))


def plan_eviction(
    candidates: Sequence[Candidate],
    *,
    used: int,
    incoming: int,
    cap: int,
    now: float,
    max_age: float,
) -> Eviction:
    """Which archives to delete so that ``used + incoming <= cap`` and none is older than
    ``max_age``.

    ``used`` counts every byte the directory holds outside the active files, deletable or
    not; only ``candidates`` may go (files that failed to delete a moment ago are left
    out by the caller and simply skipped). Oldest go first, and only as many as needed: a
    deletion is never undone, so the plan keeps every byte the cap allows. A busy file
    stops the walk: deleting newer files past it would leave a hole in the history, so
    the plan asks for its compression to be cancelled instead and reports that the
    incoming bytes do not fit yet. When even deleting every candidate would not make
    room, only expired archives go: history is not thrown away for nothing.
    """
    deleted: list[str] = []
    freed = 0
    expired_before = now - max_age
    # If deleting every candidate would still not make room (the rest cannot be deleted
    # right now), deleting history achieves nothing: only retention applies.
    hopeless = used - sum(c.size for c in candidates) + incoming > cap
    for candidate in oldest_first(candidates):
        expired = candidate.closed_at < expired_before
        if not expired and (hopeless or used - freed + incoming <= cap):
            break  # sorted by age: nothing after this one is expired or needed
        if candidate.busy:
            fits = used - freed + incoming <= cap
            cancel = None if fits or hopeless else candidate.name
            return Eviction(tuple(deleted), fits, cancel)
        deleted.append(candidate.name)
        freed += candidate.size
    return Eviction(tuple(deleted), used - freed + incoming <= cap)


def pick_to_compress(pending: Sequence[Candidate]) -> Candidate | None:
    """Newest first: when compression falls behind, the oldest waiting files are the next
    the cap deletes, so time spent on them is wasted; the newest live longest. It also
    keeps the file being compressed the newest archive, so the cap deletes strictly
    from the old end and the archives stay one unbroken run."""
    if not pending:
        return None
    return oldest_first(pending)[-1]
