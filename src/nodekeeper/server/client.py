"""A small client for the admin API, used by the `nodekeeper` admin commands."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from nodekeeper.version.schema import check_url

SERVER_ENV = "NODEKEEPER_SERVER"
TOKEN_ENV = "NODEKEEPER_ADMIN_TOKEN"
CHUNK = 1 << 20


class AdminClientError(Exception):
    """What went wrong, phrased for the operator at the terminal."""


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
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise AdminClientError(
                f"no admin token: set ${TOKEN_ENV} (the server printed where its token is)"
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
        if response.status_code >= 400:
            try:
                message = response.json().get("error") or response.text
            except ValueError:
                message = response.text
            raise AdminClientError(f"{message} (HTTP {response.status_code})")
        return response.json() if response.content else None

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

    def publish(self, process: str, version: str, artifacts: dict[str, str]) -> dict[str, Any]:
        specs = []
        for platform, source in artifacts.items():
            if source.startswith(("http://", "https://")):
                sha256, size = describe_remote(source)
                specs.append({"platform": platform, "url": source, "sha256": sha256, "size": size})
            else:
                path = Path(source)
                if not path.is_file():
                    raise AdminClientError(
                        f"artifact file {path} for {platform} does not exist or is not a file"
                    )
                uploaded = self.upload(path)
                specs.append(
                    {
                        "platform": platform,
                        "upload_id": uploaded["upload_id"],
                        "filename": path.name,
                    }
                )
        return self.request(
            "POST",
            "/v1/admin/releases",
            json={"process": process, "version": version, "artifacts": specs},
        )


def describe_remote(url: str) -> tuple[str, int]:
    """Download a remote artifact once to record its sha256 and size."""
    try:
        check_url(url)
    except ValueError as exc:
        raise AdminClientError(str(exc)) from None
    digest = hashlib.sha256()
    size = 0
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=30.0) as response:
            if response.status_code != 200:
                raise AdminClientError(
                    f"artifact URL {url} answered HTTP {response.status_code}; "
                    "check the URL is public and correct"
                )
            for chunk in response.iter_bytes(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except httpx.HTTPError as exc:
        raise AdminClientError(f"artifact URL {url} is unreachable: {exc}") from None
    if size == 0:
        raise AdminClientError(f"artifact URL {url} returned an empty body")
    return digest.hexdigest(), size
