"""The installed versions: where the updater's files live and how a version is started.

A version is installed as ``versions/<process>/<version>/`` (renamed into place after
verification and unpack, so a directory there is always complete). Its command comes
from its own manifest (``run_argv``), never from a guess, so these helpers are the one
place that turns "run version X" into an argv, and that says which version can start when
an install is damaged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from nodekeeper.version.manifest import (
    MANIFEST_NAME,
    ArtifactManifest,
    manifest_for_zip,
    parse_manifest,
    run_argv,
)

from .errors import InvalidArtifact


@dataclass(frozen=True)
class Layout:
    """The updater's part of the keeper's data dir."""

    data_dir: Path

    @property
    def downloads(self) -> Path:
        return self.data_dir / "downloads"

    @property
    def versions(self) -> Path:
        return self.data_dir / "versions"

    @property
    def state(self) -> Path:
        return self.data_dir / "state"


def install_manifest(install_dir: Path) -> ArtifactManifest:
    """The manifest of an installed version (or the bare-executable description)."""
    path = install_dir / MANIFEST_NAME
    if path.is_file():
        return parse_manifest(path.read_bytes())
    files = [p.relative_to(install_dir).as_posix() for p in install_dir.rglob("*") if p.is_file()]
    return manifest_for_zip(files, None)


@dataclass(frozen=True)
class Installs:
    """The commands of one process's installed versions."""

    versions: Path  # ``Layout.versions``
    process: str
    python: str
    args: list[str]  # after the artifact's own command, placeholders expanded

    def argv_for(self, version: str) -> list[str]:
        """The command of an installed version. Raises OSError or ValueError when its
        install cannot be read."""
        install = self.versions / self.process / version
        manifest = install_manifest(install)
        return run_argv(manifest, str(install), self.python, self.args)

    def argv_checked(self, version: str) -> list[str]:
        """``argv_for`` for a version about to be switched to: an unreadable install is
        the release's fault (InvalidArtifact)."""
        try:
            return self.argv_for(version)
        except (OSError, ValueError) as exc:
            raise InvalidArtifact(f"cannot read the install of {version}: {exc}") from None

    def startable(
        self,
        candidates: Iterable[str | None],
        unreadable: Callable[[str, Exception], None],
    ) -> list[str] | None:
        """The command of the first candidate whose install can be read, so the keeper
        always starts something; ``unreadable`` hears of each one skipped."""
        for candidate in dict.fromkeys(v for v in candidates if v):
            try:
                return self.argv_for(candidate)
            except (OSError, ValueError) as exc:
                unreadable(candidate, exc)
        return None
