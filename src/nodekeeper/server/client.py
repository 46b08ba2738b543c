"""A small client for the admin API, used by the `nodekeeper` admin commands."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Root

from nodekeeper.signing.layout import METADATA_PATH
from nodekeeper.version.manifest import InvalidArtifactError
from nodekeeper.version.platforms import check_known_platform
from nodekeeper.version.schema import check_process_name, check_url
from nodekeeper.version.versions import InvalidVersionError, normalize_version

from .release_check import check_artifact
from .tuf_publish import (
    Artifact,
    TargetsError,
    check_signer,
    follow_roots,
    kept_releases,
    next_targets,
)

SERVER_ENV = "NODEKEEPER_SERVER"
TOKEN_ENV = "NODEKEEPER_ADMIN_TOKEN"
CHUNK = 1 << 20


class AdminClientError(Exception):
    """What went wrong, phrased for the operator at the terminal."""


class PublishInputError(AdminClientError):
    """The operator's input is wrong; found before anything was sent to the server."""


class AdminClient:
    def __init__(self, server: str, token: str, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        self._http = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout, read=300.0),
        )

    @classmethod
    def from_environment(cls, server: str | None) -> AdminClient:
        server = server or os.environ.get(SERVER_ENV)
        if not server:
            raise AdminClientError(
                f"no control plane given: pass --server URL or set ${SERVER_ENV}"
            )
        try:
            check_url(server)
        except ValueError:
            raise AdminClientError(
                f"the control plane URL {server!r} (--server or ${SERVER_ENV}) must be like "
                "http://127.0.0.1:7780"
            ) from None
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise AdminClientError(
                f"no admin token: set {TOKEN_ENV} to the server's admin token (`server run` "
                "prints where it is; by default DATA_DIR/admin-token)"
            )
        return cls(server, token)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AdminClientError(
                f"cannot reach the control plane at {self.server}: {exc}"
            ) from None
        try:
            body = response.json() if response.content else None
        except ValueError:
            # Not our API (a web page, a proxy's error): its text is no use on one line.
            raise AdminClientError(
                f"{self.server} answered HTTP {response.status_code} with something that is "
                "not the control plane's API; check --server (or $NODEKEEPER_SERVER)"
            ) from None
        if response.status_code >= 400:
            message = body.get("error") if isinstance(body, dict) else None
            raise AdminClientError(
                f"{message or response.reason_phrase} (HTTP {response.status_code})"
            )
        return body

    # -- releases ----------------------------------------------------------------------

    def upload(self, path: Path) -> dict[str, Any]:
        """Stream a local file; checks the server hashed the same bytes we read."""
        local = hashlib.sha256()

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    local.update(chunk)
                    yield chunk

        result = self.request("PUT", "/v1/admin/uploads", content=chunks())
        if result["sha256"] != local.hexdigest():
            raise AdminClientError(
                f"{path}: the server stored different bytes than were sent "
                f"(sha256 {result['sha256']} != {local.hexdigest()}); try again"
            )
        return result

    def publish(
        self,
        process: str,
        version: str,
        artifacts: dict[str, str],
        targets_key: Signer | None = None,
        *,
        trusted_root: bytes | None = None,
    ) -> dict[str, Any]:
        """Check everything that can be checked, then upload, then publish.

        Releases are immutable, so a mistake found after the upload would burn the
        version: the names, each artifact's content, whether the version is still free
        and whether the control plane wants it signed (and by this key) are all checked
        before the first byte goes to the server. With ``targets_key`` the release's
        artifacts are signed into the next TUF targets and sent with it (decision 084)."""
        version = _check_names(process, version, artifacts)
        local = {p: Path(s) for p, s in artifacts.items() if not _is_url(s)}
        for platform, path in local.items():
            _check_local(path, platform, process, version)
        self._check_unpublished(process, version)
        chain = self.signing_chain(targets_key, trusted_root)
        specs: list[dict[str, Any]] = []
        signed: list[Artifact] = []
        for platform, source in artifacts.items():
            if _is_url(source):
                sha256, size = describe_remote(source, process, version)
                specs.append({"platform": platform, "url": source, "sha256": sha256, "size": size})
                signed.append(Artifact(process, version, platform, sha256, size))
        for platform, path in local.items():
            uploaded = self.upload(path)
            specs.append(
                {"platform": platform, "upload_id": uploaded["upload_id"], "filename": path.name}
            )
            signed.append(
                Artifact(process, version, platform, uploaded["sha256"], uploaded["size"])
            )
        body: dict[str, Any] = {"process": process, "version": version, "artifacts": specs}
        if targets_key is not None and chain is not None:
            data, _version = self.next_targets(chain, targets_key, signed)
            body["targets"] = data.decode("utf-8")
        return self.request("POST", "/v1/admin/releases", json=body)

    # -- TUF (decision 084) ------------------------------------------------------------

    def tuf_status(self) -> dict[str, Any]:
        """The server's TUF roles; a control plane from before signed releases (no such
        endpoint: 404) signs nothing, as one without a root."""
        try:
            return self.request("GET", "/v1/admin/tuf")
        except AdminClientError as exc:
            if str(exc).endswith("(HTTP 404)"):
                return {"enabled": False, "roles": {}, "problems": []}
            raise

    def tuf_metadata(self, name: str) -> bytes | None:
        """A metadata file's exact bytes, or None for a 404."""
        try:
            response = self._http.get(METADATA_PATH + name)
        except httpx.HTTPError as exc:
            raise AdminClientError(
                f"cannot reach the control plane at {self.server}: {exc}"
            ) from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise AdminClientError(f"{METADATA_PATH}{name}: HTTP {response.status_code}")
        return response.content

    def signing_chain(
        self, targets_key: Signer | None, trusted_root: bytes | None
    ) -> list[bytes] | None:
        """The verified root chain (oldest first, from ``trusted_root`` to the control
        plane's current root) when the control plane signs releases; refuses a publish
        without the key it needs, without a trusted root to check the server's against,
        or with a key the current root does not name."""
        status = self.tuf_status()
        if not status["enabled"]:
            if targets_key is not None:
                raise PublishInputError(
                    "--targets-key given, but this control plane has no TUF root: upload one "
                    "with `nodekeeper keys upload-root FILE`, or publish without the key"
                )
            return None
        targets = status["roles"].get("targets", {})
        keys = ", ".join(k[:8] for k in targets.get("keyids", ()))
        if targets_key is None:
            raise PublishInputError(
                "this control plane signs releases (TUF): pass --targets-key FILE, the "
                f"targets key ({keys}) made by `nodekeeper keys create`"
            )
        if trusted_root is None:
            raise PublishInputError(
                "signing needs the root you trust to check the control plane's against: "
                "pass --trusted-root FILE (the 1.root.json of `nodekeeper keys create`)"
            )
        try:
            chain = follow_roots(
                trusted_root,
                lambda version: self.tuf_metadata(f"{version}.root.json"),
                int(status["roles"]["root"]["version"]),
            )
            check_signer(Metadata[Root].from_bytes(chain[-1]).signed, targets_key)
        except TargetsError as exc:
            raise PublishInputError(str(exc)) from None
        return chain

    def next_targets(
        self, chain: list[bytes], targets_key: Signer, add: list[Artifact]
    ) -> tuple[bytes, int]:
        """The next targets: the current one's kept entries plus ``add``, signed. ``chain``
        is the verified root chain, oldest first (``signing_chain``)."""
        current = self.current_targets()
        kept = kept_releases(self.request("GET", "/v1/admin/status"))
        earlier = list(reversed(chain[:-1]))
        try:
            return next_targets(chain[-1], current, targets_key, add, kept, time.time(), earlier)
        except TargetsError as exc:
            raise AdminClientError(str(exc)) from None

    def current_targets(self) -> bytes | None:
        version = self.tuf_status()["roles"].get("targets", {}).get("version")
        return None if version is None else self.tuf_metadata(f"{version}.targets.json")

    def _check_unpublished(self, process: str, version: str) -> None:
        for row in self.request("GET", "/v1/admin/status"):
            if row["process"] == process and version in row["versions"]:
                raise AdminClientError(
                    f"{process} {version} is already published and releases are immutable; "
                    "publish the change as a new version"
                )


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _check_names(process: str, version: str, artifacts: dict[str, str]) -> str:
    """The normalised version, once the process, version and platforms are valid."""
    try:
        check_process_name(process)
        version = normalize_version(version)
        for platform in artifacts:
            check_known_platform(platform)
    except (ValueError, InvalidVersionError) as exc:
        raise PublishInputError(str(exc)) from None
    return version


def _check_local(path: Path, platform: str, process: str, version: str) -> None:
    if not path.is_file():
        raise PublishInputError(
            f"artifact file {path} for {platform} does not exist or is not a file"
        )
    try:
        check_artifact(path, process, version)
    except InvalidArtifactError as exc:
        raise PublishInputError(f"artifact {path} for {platform}: {exc}") from None
    except OSError as exc:
        raise PublishInputError(f"cannot read artifact file {path}: {exc.strerror}") from None


def describe_remote(url: str, process: str, version: str) -> tuple[str, int]:
    """Download a remote artifact once: check it is the release, record sha256 and size."""
    try:
        check_url(url)
    except ValueError as exc:
        raise PublishInputError(str(exc)) from None
    digest = hashlib.sha256()
    size = 0
    with tempfile.TemporaryDirectory(prefix="nodekeeper-publish-") as tmp:
        copy = Path(tmp) / "artifact.zip"
        try:
            with (
                httpx.stream("GET", url, follow_redirects=True, timeout=30.0) as response,
                copy.open("wb") as f,
            ):
                if response.status_code != 200:
                    raise AdminClientError(
                        f"artifact URL {url} answered HTTP {response.status_code}; "
                        "check the URL is public and correct"
                    )
                for chunk in response.iter_bytes(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    f.write(chunk)
        except httpx.HTTPError as exc:
            raise AdminClientError(f"artifact URL {url} is unreachable: {exc}") from None
        if size == 0:
            raise PublishInputError(f"artifact URL {url} returned an empty body")
        try:
            check_artifact(copy, process, version)
        except InvalidArtifactError as exc:
            raise PublishInputError(f"artifact {url}: {exc}") from None
    return digest.hexdigest(), size
