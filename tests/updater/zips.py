"""Hand-made zips for the unpack tests: hostile entries the release builder never makes."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

PY_MANIFEST = {
    "format": 1,
    "process": "storagenode",
    "version": "1.2.3",
    "run": {"kind": "python", "module": "pkg"},
}


def entry(name: str, mode: int | None = None, *, system: int = 3) -> zipfile.ZipInfo:
    """A ZipInfo with an explicit Unix mode (file type bits included), or none."""
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.create_system = system
    if mode is not None:
        info.external_attr = mode << 16
    return info


def make_zip(
    path: Path,
    entries: list[tuple[str | zipfile.ZipInfo, bytes]],
    *,
    manifest: dict | None = PY_MANIFEST,
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """Write a zip with ``entries`` (plus a manifest unless None and a ``pkg`` module when
    the manifest runs one); duplicate names are allowed on purpose."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        if manifest is not None:
            zf.writestr("nodekeeper-artifact.json", json.dumps(manifest))
            if manifest.get("run", {}).get("module") == "pkg":
                zf.writestr("pkg/__init__.py", b"")
        for name, data in entries:
            zf.writestr(name, data)
    return path


def regular(name: str, perm: int = 0o644) -> zipfile.ZipInfo:
    return entry(name, stat.S_IFREG | perm)
