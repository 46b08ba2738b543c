"""Where TUF metadata lives and what a release artifact is called in it (decision 083).

The announcement's artifact URL may point anywhere (the control plane's `/artifacts`, a
CDN, a mirror): the TUF target path is a logical name built from what the announcement
says the artifact *is* — process, version, platform — not from where it is served. The
signed entry repeats those three as custom fields, so a keeper can also refuse a signed
artifact that is offered under another name (a signed 1.0.0 served as 1.2.0).
"""

from __future__ import annotations

from nodekeeper.version.versions import normalize_version

# On the control plane: GET {server}/tuf/metadata/{N}.root.json, timestamp.json,
# {N}.snapshot.json, {N}.targets.json (consistent snapshots: every version by number).
METADATA_PATH = "/tuf/metadata/"


def metadata_url(server_url: str) -> str:
    """The metadata base URL on the control plane at ``server_url`` (trailing slash)."""
    return server_url.rstrip("/") + METADATA_PATH


def target_path(process: str, version: str, platform: str) -> str:
    """The TUF target path of one release artifact: ``process/version/platform.zip``."""
    return f"{process}/{normalize_version(version)}/{platform}.zip"


def target_custom(process: str, version: str, platform: str) -> dict[str, str]:
    """The custom fields of the signed entry: what the artifact is, in the signed bytes."""
    return {"process": process, "version": normalize_version(version), "platform": platform}
