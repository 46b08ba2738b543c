"""Reading a log directory back the way an operator would: real files, real gzip."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

from nodekeeper.logs.policy import parse_archive_filename


class FakeClock:
    """A clock the test moves by hand (the logs read it; nothing sleeps on it)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def archives(directory: Path, base: str) -> list[Path]:
    """Archives of ``base``, oldest first (by sequence number), .gz preferred over a
    plain file of the same sequence; partial .gz.tmp files are not archives."""
    by_seq: dict[int, Path] = {}
    for name in os.listdir(directory):
        parsed = parse_archive_filename(name)
        if parsed is None or parsed.base != base or parsed.kind == "partial":
            continue
        if parsed.seq not in by_seq or parsed.kind == "gzip":
            by_seq[parsed.seq] = directory / name
    return [by_seq[seq] for seq in sorted(by_seq)]


def read_file(path: Path) -> bytes:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            return fh.read()  # raises if the archive is not valid, complete gzip
    return path.read_bytes()


def all_lines(directory: Path, base: str, suffix: str = ".log") -> list[bytes]:
    """Every line the directory holds for ``base``: archives in order, then active."""
    data = b"".join(read_file(p) for p in archives(directory, base))
    active = directory / f"{base}{suffix}"
    if active.exists():
        data += active.read_bytes()
    return data.splitlines()


@dataclass(frozen=True)
class Snapshot:
    archived: int  # bytes outside the active file(s)
    active: int
    files: int


def snapshot(directory: Path, active_names: set[str], attempts: int = 50) -> Snapshot | None:
    """Sizes of the directory at one consistent moment, or None if it never held still.

    A directory cannot be read atomically: list, stat every file, list again, and keep
    the reading only if no file appeared, vanished or was renamed in between. Then no
    deleted file was counted beside its replacement, and the only changes during the
    reading were files growing, so each size read is no larger than at the moment of
    the last stat: the sum is a size the directory really reached.
    """
    for _ in range(attempts):
        before = sorted(os.listdir(directory))
        archived = active = 0
        try:
            for name in before:
                size = os.stat(directory / name).st_size
                if name in active_names:
                    active += size
                else:
                    archived += size
        except FileNotFoundError:
            continue
        if sorted(os.listdir(directory)) == before:
            return Snapshot(archived, active, len(before))
    return None
