"""Installing a verified zip side by side: ``versions/<process>/<version>``.

The zip is unpacked into ``versions/<process>/<version>.tmp-*``, every file and directory
fsynced, and the directory renamed into place, so ``<version>`` either does not exist or
holds a complete install: a crash half-way leaves only a ``.tmp-*`` directory, which is
never executed and is removed by ``remove_leftovers``.

Security properties enforced here, each on every entry (the sha256 says the zip is the
published one; these make sure even a published-by-mistake or hostile zip cannot write
outside its directory or plant something that is not a plain file):

- names pass ``manifest.check_member_name`` (no absolute paths, drive letters or ``..``)
  and are unique, case-insensitively (they would collide on Windows);
- only regular files and directories: symlink, device, FIFO and socket entries are
  refused (a symlink entry followed by a file "inside" it is the classic zip-slip);
- files are created with O_EXCL|O_NOFOLLOW and written no longer than the size the zip
  declares (zipfile also checks each CRC), and the declared sizes are checked against
  the free space first, so a zip bomb is an OutOfSpace error, not a full disk;
- the manifest must name the announced process and version.

The execute bit is set on the manifest's executable and on entries whose Unix mode has
one (zips built on Windows carry none), never setuid/setgid.
"""

from __future__ import annotations

import os
import posixpath
import stat
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nodekeeper.durable import fsync_dir
from nodekeeper.version.manifest import (
    MANIFEST_NAME,
    ArtifactManifest,
    ExecutableRun,
    InvalidArtifactError,
    check_member_name,
    manifest_for_zip,
)
from nodekeeper.version.versions import normalize_version

from .errors import InvalidArtifact, UpdateError, storage_error
from .storage import MiB, check_free_space, remove_tree

TMP_MARK = ".tmp-"
OLD_MARK = ".old-"
DEFAULT_UNPACK_MARGIN = 16 * MiB
_OPEN_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
)


@dataclass(frozen=True)
class MemberInfo:
    """What the checks need from a zip entry (``zipfile.ZipInfo`` reduced to data)."""

    name: str
    unix_mode: int  # external_attr >> 16; 0 when the zip was not made on Unix
    size: int
    is_dir: bool


@dataclass(frozen=True)
class Member:
    """An entry that passed the checks: ``path`` is clean, relative, "/"-separated."""

    name: str  # as in the zip, to read it
    path: str
    is_dir: bool
    size: int
    executable: bool


@dataclass(frozen=True)
class Installed:
    """A complete install of ``process`` ``version`` at ``path``; ``manifest`` tells how
    to run it (``nodekeeper.version.manifest.run_argv``)."""

    process: str
    version: str
    path: Path
    manifest: ArtifactManifest


def install_dir(versions_dir: Path, process: str, version: str) -> Path:
    return Path(versions_dir) / process / normalize_version(version)


def check_members(members: Sequence[MemberInfo]) -> list[Member]:
    """Validate every entry (pure). Raises InvalidArtifact naming the first bad one."""
    out: list[Member] = []
    seen: dict[str, str] = {}
    for info in members:
        try:
            clean = check_member_name(info.name)
        except InvalidArtifactError as exc:
            raise InvalidArtifact(f"refusing the artifact: {exc}") from None
        path = posixpath.normpath(clean.rstrip("/"))
        if ":" in path:
            # On Windows "name:stream" writes an alternate data stream and "C:x" is
            # drive-relative; no artifact needs a colon, so it is refused everywhere.
            raise InvalidArtifact(f"refusing the artifact: zip entry {info.name!r} has a ':'")
        if path in (".", ""):
            raise InvalidArtifact(f"refusing the artifact: zip entry {info.name!r} names no file")
        kind = stat.S_IFMT(info.unix_mode)
        is_dir = info.is_dir or kind == stat.S_IFDIR
        if kind == stat.S_IFLNK:
            raise InvalidArtifact(f"refusing the artifact: zip entry {info.name!r} is a symlink")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise InvalidArtifact(
                f"refusing the artifact: zip entry {info.name!r} is a device, FIFO or socket "
                f"(mode {oct(info.unix_mode)}), not a file"
            )
        key = path.casefold()
        if key in seen:
            raise InvalidArtifact(
                f"refusing the artifact: zip entries {seen[key]!r} and {info.name!r} name "
                "the same file"
            )
        seen[key] = info.name
        executable = not is_dir and bool(info.unix_mode & 0o111)
        out.append(Member(info.name, path, is_dir, 0 if is_dir else info.size, executable))
    files = {m.path.casefold(): m.name for m in out if not m.is_dir}
    for m in out:
        parts = m.path.casefold().split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in files:
                raise InvalidArtifact(
                    f"refusing the artifact: {files[parent]!r} is a file but {m.name!r} is "
                    "inside it"
                )
    return out


def check_manifest(manifest: ArtifactManifest, process: str, version: str) -> None:
    """The artifact must be what was announced (pure). A bare executable has no version
    in its zip; preflight checks what it prints."""
    if manifest.process != process:
        raise InvalidArtifact(
            f"the artifact is for process {manifest.process!r}, but {process!r} was announced"
        )
    if manifest.version is not None and manifest.version != normalize_version(version):
        raise InvalidArtifact(
            f"the artifact says it is {process} {manifest.version}, but "
            f"{normalize_version(version)} was announced"
        )


def unpack(
    zip_path: Path,
    versions_dir: Path,
    process: str,
    version: str,
    *,
    free_space_margin: int = DEFAULT_UNPACK_MARGIN,
) -> Installed:
    """Unpack a verified artifact to ``versions/<process>/<version>`` (replacing an
    existing install of that same version: never call it for the running version).

    Raises InvalidArtifact (hostile or broken zip, manifest mismatch), OutOfSpace,
    ReadOnlyFileSystem or StorageError. On any failure nothing is left but, at worst,
    a ``.tmp-*`` directory that could not be deleted.
    """
    final = install_dir(versions_dir, process, version)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise InvalidArtifact(f"{zip_path.name} is not a readable zip: {exc}") from None
    except OSError as exc:
        raise storage_error(exc, Path(zip_path), "read") from None
    with zf:
        members = check_members([_info(i) for i in zf.infolist()])
        manifest = _read_manifest(zf, members)
        check_manifest(manifest, process, version)
        if isinstance(manifest.run, ExecutableRun):
            run_path = manifest.run.path
            members = [
                Member(m.name, m.path, m.is_dir, m.size, True) if m.path == run_path else m
                for m in members
            ]
        proc_dir = final.parent
        try:
            proc_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, proc_dir, "create the versions directory") from None
        needed = sum(m.size for m in members) + free_space_margin
        check_free_space(proc_dir, needed, f"unpacking {process} {final.name}")
        tmp = proc_dir / f"{final.name}{TMP_MARK}{uuid.uuid4().hex[:12]}"
        try:
            _extract(zf, members, tmp)
            _move_into_place(tmp, final)
        except BaseException:
            remove_tree(tmp)
            raise
    return Installed(process, final.name, final, manifest)


def discard(path: Path) -> bool:
    """Remove an install (one that failed preflight or probation). It is first renamed to
    ``.old-*``, so ``<version>`` disappears in one step even when the delete that
    follows fails (a file held open on Windows); returns whether everything is gone.
    What is left is removed by ``remove_leftovers`` later."""
    path = Path(path)
    if not path.exists():
        return True
    aside = path.with_name(f"{path.name}{OLD_MARK}{uuid.uuid4().hex[:12]}")
    try:
        os.replace(path, aside)
    except OSError as exc:
        raise storage_error(exc, path, "move aside the install at") from None
    remove_tree(aside)
    return not aside.exists()


def remove_leftovers(versions_dir: Path, process: str) -> list[Path]:
    """Delete ``.tmp-*`` and ``.old-*`` directories of ``process`` (left by a crash or a
    failed delete); returns what could not be deleted, to retry later."""
    proc_dir = Path(versions_dir) / process
    stuck: list[Path] = []
    try:
        entries = list(proc_dir.iterdir())
    except FileNotFoundError:
        return stuck
    for entry in entries:
        if TMP_MARK in entry.name or OLD_MARK in entry.name:
            remove_tree(entry)
            if entry.exists():
                stuck.append(entry)
    return stuck


def _info(info: zipfile.ZipInfo) -> MemberInfo:
    return MemberInfo(info.filename, info.external_attr >> 16, info.file_size, info.is_dir())


def _read_manifest(zf: zipfile.ZipFile, members: list[Member]) -> ArtifactManifest:
    files = [m.path for m in members if not m.is_dir]
    data = None
    by_path = {m.path: m.name for m in members}
    if MANIFEST_NAME in by_path:
        try:
            data = zf.read(by_path[MANIFEST_NAME])
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError) as exc:
            raise InvalidArtifact(f"cannot read {MANIFEST_NAME} from the zip: {exc}") from None
    try:
        return manifest_for_zip(files, data)
    except InvalidArtifactError as exc:
        raise InvalidArtifact(f"refusing the artifact: {exc}") from None


def _extract(zf: zipfile.ZipFile, members: list[Member], tmp: Path) -> None:
    try:
        tmp.mkdir()
        dirs = {tmp}
        for m in members:
            target = tmp.joinpath(*m.path.split("/"))
            if m.is_dir:
                target.mkdir(parents=True, exist_ok=True)
                dirs.add(target)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            dirs.add(target.parent)
            _write_member(zf, m, target)
        # Deepest first, so each directory's entries are durable before its parent's.
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(d)
    except UpdateError:
        raise
    except zipfile.BadZipFile as exc:
        raise InvalidArtifact(f"the zip is damaged: {exc}") from None
    except (NotImplementedError, RuntimeError) as exc:
        # zipfile's words for an unsupported compression method and an encrypted entry.
        raise InvalidArtifact(f"the zip cannot be unpacked: {exc}") from None
    except OSError as exc:
        raise storage_error(exc, tmp, "unpack into") from None


def _write_member(zf: zipfile.ZipFile, m: Member, target: Path) -> None:
    mode = 0o755 if m.executable else 0o644
    fd = os.open(target, _OPEN_FLAGS, mode)
    try:
        written = 0
        with zf.open(m.name) as src:
            while chunk := src.read(MiB):
                written += len(chunk)
                if written > m.size:  # zipfile bounds this too; never trust one guard
                    raise InvalidArtifact(f"zip entry {m.name!r} is longer than it declares")
                _write_all(fd, chunk)
        if os.name != "nt":
            os.fchmod(fd, mode)  # the umask must not drop the execute bit
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` (the same version installed
    before, e.g. by an attempt whose journal entry was lost) is moved aside first and
    deleted after, so ``final`` is complete at every instant it exists."""
    old: Path | None = None
    if final.exists():
        old = final.with_name(f"{final.name}{OLD_MARK}{uuid.uuid4().hex[:12]}")
        try:
            os.replace(final, old)
        except OSError as exc:
            raise storage_error(exc, final, "move aside the earlier install at") from None
    try:
        os.replace(tmp, final)
    except OSError as exc:
        if old is not None:
            os.replace(old, final)
        raise storage_error(exc, final, "move the unpacked version to") from None
    fsync_dir(final.parent)
    if old is not None:
        remove_tree(old)
