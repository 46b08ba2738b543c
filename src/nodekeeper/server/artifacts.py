"""The artifact store: uploaded release files kept in a directory and served as static files.

Uploads stream to ``<data dir>/uploads/<id>.part`` with the sha256 computed on the way in, and are
moved into ``<process>/<version>/<platform>/<file>`` only when the release that names
them is published, so a rejected publish leaves no artifact behind. Replicas that serve
stored artifacts need the directory shared; remote URLs (a CDN) need nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidRequestError, NotFoundError

UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
STALE_UPLOAD_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Upload:
    id: str
    sha256: str
    size: int


def safe_filename(name: str) -> str:
    """A plain file name: no directories, no leading dots, only [A-Za-z0-9._-]."""
    base = SAFE_FILENAME.sub("_", os.path.basename(name.replace("\\", "/"))).lstrip(".")
    return base[:128] or "artifact.zip"


class ArtifactStore:
    def __init__(self, root: Path, uploads: Path, max_size: int) -> None:
        self.root = root
        self.uploads = uploads  # outside root: unpublished uploads are never served
        self.max_size = max_size
        self.root.mkdir(parents=True, exist_ok=True)
        self.uploads.mkdir(parents=True, exist_ok=True)

    def begin_upload(self) -> tuple[str, Path]:
        upload_id = secrets.token_hex(16)
        return upload_id, self.uploads / f"{upload_id}.part"

    def finish_upload(self, upload_id: str, digest: hashlib._Hash, size: int) -> Upload:
        part = self.uploads / f"{upload_id}.part"
        if size == 0:
            part.unlink(missing_ok=True)
            raise InvalidRequestError("the uploaded artifact is empty")
        part.rename(self.uploads / upload_id)
        return Upload(id=upload_id, sha256=digest.hexdigest(), size=size)

    def discard(self, upload_id: str) -> None:
        (self.uploads / f"{upload_id}.part").unlink(missing_ok=True)
        (self.uploads / upload_id).unlink(missing_ok=True)

    def describe(self, upload_id: str) -> Upload:
        """Re-hash a finished upload: the publish step trusts the bytes, not the client."""
        path = self._finished(upload_id)
        digest = hashlib.sha256()
        size = 0
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        return Upload(id=upload_id, sha256=digest.hexdigest(), size=size)

    def place(self, upload_id: str, process: str, version: str, platform: str, name: str) -> str:
        """Move a finished upload to its final place; returns the stored name (a URL path)."""
        stored_name = f"{process}/{version}/{platform}/{safe_filename(name)}"
        target = self.root / stored_name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(self._finished(upload_id), target)  # may cross file systems
        return stored_name

    def remove_stored(self, stored_names: Iterable[str]) -> None:
        for name in stored_names:
            (self.root / name).unlink(missing_ok=True)

    def remove_stale_uploads(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        removed = 0
        for path in self.uploads.iterdir():
            try:
                if now - path.stat().st_mtime > STALE_UPLOAD_SECONDS:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def finished_path(self, upload_id: str) -> Path:
        """Where a finished upload is, for checks before it is published."""
        return self._finished(upload_id)

    def _finished(self, upload_id: str) -> Path:
        path = self.uploads / upload_id
        if not UPLOAD_ID.match(upload_id) or not path.is_file():
            raise NotFoundError(
                f"upload {upload_id!r} does not exist (uploads expire after a day); "
                "upload the file again"
            )
        return path
