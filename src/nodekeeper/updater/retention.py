"""Keep the current and the previous version of the node; delete older installs.

The decision (``versions_to_delete``) is pure. The deletion first renames the install to
``<version>.old-*`` (atomic), so a directory that is only half deleted never carries a
version's name, then deletes the renamed tree. A deletion that fails (a file held open
on Windows, an immutable file, a read-only disk) is logged, indexed once per path, and
retried at the next sweep (every cycle); it is never fatal, since an old install costs
only disk space.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nodekeeper.durable import fsync_dir
from nodekeeper.version.versions import InvalidVersionError, parse_version

from .interfaces import ErrorSink
from .unpack import OLD_MARK, TMP_MARK

log = logging.getLogger("nodekeeper.updater")


def is_leftover(name: str) -> bool:
    """A ``.tmp-*`` (interrupted unpack) or ``.old-*`` (moved aside for deletion) dir."""
    return TMP_MARK in name or OLD_MARK in name


def versions_to_delete(names: Iterable[str], keep: Iterable[str]) -> list[str]:
    """Install directory names to delete (pure): every version not in ``keep``. Names
    that are not versions (and not leftovers) are not ours and are left alone."""
    kept = set(keep)
    out = []
    for name in names:
        if name in kept or is_leftover(name):
            continue
        try:
            parse_version(name)
        except (InvalidVersionError, ValueError):
            continue
        out.append(name)
    return sorted(out, key=parse_version)


def downloads_to_delete(names: Iterable[str], keep_prefixes: Iterable[str]) -> list[str]:
    """Files in ``downloads/`` to delete (pure): all but those of the update in flight
    (``<process>-<version>-<platform>.zip[.part]``), whose partial download is resumed."""
    prefixes = tuple(keep_prefixes)
    return sorted(n for n in names if not (prefixes and n.startswith(prefixes)))


def _rmtree(path: Path, problems: list[BaseException]) -> None:
    """``shutil.rmtree`` that collects every failure instead of stopping at the first."""
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=lambda _f, _p, exc: problems.append(exc))
    else:  # 3.11: onerror, with (type, value, traceback)
        shutil.rmtree(path, onerror=lambda _f, _p, info: problems.append(info[1]))


@dataclass
class Sweep:
    deleted: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)


class Retention:
    def __init__(self, versions_dir: Path, downloads_dir: Path, errors: ErrorSink | None) -> None:
        self.versions_dir = Path(versions_dir)
        self.downloads_dir = Path(downloads_dir)
        self.errors = errors
        self._reported: set[str] = set()

    def installed(self, process: str) -> list[str]:
        """Complete installs of ``process``: directories named as a version."""
        try:
            names = [p.name for p in (self.versions_dir / process).iterdir() if p.is_dir()]
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if is_leftover(name):
                continue
            try:
                parse_version(name)
            except (InvalidVersionError, ValueError):
                continue
            out.append(name)
        return out

    def sweep(self, process: str, keep: Iterable[str], keep_downloads: Iterable[str]) -> Sweep:
        """Delete old installs, leftovers and stale downloads; never raises."""
        result = Sweep()
        proc_dir = self.versions_dir / process
        for name in versions_to_delete(self.installed(process), keep):
            self._delete_install(proc_dir / name, result)
        try:
            entries = [p for p in proc_dir.iterdir() if is_leftover(p.name)]
        except OSError:
            entries = []
        for path in entries:
            self._delete_tree(path, path.name, result)
        try:
            names = [p.name for p in self.downloads_dir.iterdir() if p.is_file()]
        except OSError:
            names = []
        for name in downloads_to_delete(names, keep_downloads):
            path = self.downloads_dir / name
            try:
                path.unlink()
                result.deleted.append(f"downloads/{name}")
            except FileNotFoundError:
                pass
            except OSError as exc:
                self._stuck(path, exc, result)
        return result

    def _delete_install(self, path: Path, result: Sweep) -> None:
        aside = path.with_name(f"{path.name}{OLD_MARK}{uuid.uuid4().hex[:12]}")
        try:
            os.replace(path, aside)
            fsync_dir(path.parent)
        except OSError as exc:
            self._stuck(path, exc, result)
            return
        log.info("deleting old version %s (keeping current and previous)", path.name)
        self._delete_tree(aside, path.name, result)

    def _delete_tree(self, path: Path, label: str, result: Sweep) -> None:
        problems: list[BaseException] = []
        _rmtree(path, problems)
        if problems or path.exists():
            first = problems[0] if problems else OSError("still there")
            self._stuck(path, first, result)
            return
        self._reported.discard(str(path))
        result.deleted.append(label)

    def _stuck(self, path: Path, exc: BaseException, result: Sweep) -> None:
        reason = getattr(exc, "strerror", None) or str(exc)
        where = getattr(exc, "filename", None) or path
        message = (
            f"cannot delete {path} ({reason}: {where}); an old install only costs disk "
            "space, the keeper tries again next cycle"
        )
        result.stuck.append(str(path))
        if str(path) in self._reported:
            log.info(message)
            return
        self._reported.add(str(path))
        log.warning(message)
        if self.errors is not None:
            try:
                self.errors.record(
                    "updater", logging.WARNING, message, reason="delete-failed", path=str(path)
                )
            except Exception:
                log.exception("cannot write the error index")
