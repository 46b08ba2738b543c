"""The TUF endpoints (decision 084): the metadata for anyone, the root and targets uploads
and the repository's state for the admin.

``GET /tuf/metadata/{name}`` serves the stored bytes of ``N.root.json``, ``N.snapshot.json``,
``N.targets.json`` and ``timestamp.json`` (the newest), ``application/json``; anything else
is 404. A numbered file never changes, so it may be cached for a day; ``timestamp.json``
and every 404 are ``no-cache``: a keeper walking the root chain stops at the first 404, and
a cached 404 for the next root would hide a rotation.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from . import tuf_store
from .admin import Caller, require_admin
from .errors import InvalidRequestError
from .store import _record
from .tuf_expiry import warning
from .tuf_repo import TufRepository, known_entries

NAME = re.compile(r"^(?:([1-9][0-9]{0,9})\.(root|snapshot|targets)|(timestamp))\.json$")
IMMUTABLE = "public, max-age=86400"
# How long a replica serves the newest timestamp without asking the database again: a
# keeper that sees one a second old loses nothing, the database is spared a query per check.
TIMESTAMP_CACHE_SECONDS = 1.0

public_router = APIRouter(tags=["tuf"])
admin_router = APIRouter(
    prefix="/v1/admin/tuf", tags=["tuf"], dependencies=[Depends(require_admin)]
)


class MetadataCache:
    """Numbered files by (role, version), kept as long as the process (immutable, a few KB
    each, bounded by what is kept); the newest timestamp for a second."""

    def __init__(self, limit: int = 256) -> None:
        self._lock = threading.Lock()
        self._numbered: dict[tuple[str, int], bytes] = {}
        self._limit = limit
        self._timestamp: tuple[float, bytes] | None = None

    def numbered(self, store, role: str, version: int) -> bytes | None:
        with self._lock:
            hit = self._numbered.get((role, version))
        if hit is not None:
            return hit
        with store.engine.connect() as conn:
            row = tuf_store.get(conn, role, version)
        if row is None:
            return None
        with self._lock:
            if len(self._numbered) >= self._limit:
                self._numbered.pop(next(iter(self._numbered)))
            self._numbered[(role, version)] = row.data
        return row.data

    def timestamp(self, store) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            if self._timestamp is not None and now - self._timestamp[0] < TIMESTAMP_CACHE_SECONDS:
                return self._timestamp[1]
        with store.engine.connect() as conn:
            row = tuf_store.latest(conn, "timestamp")
        if row is None:
            return None
        with self._lock:
            self._timestamp = (now, row.data)
        return row.data

    def forget_timestamp(self) -> None:
        """After this replica signed: serve the new one at once."""
        with self._lock:
            self._timestamp = None


def _not_found(message: str) -> Response:
    return Response(
        f'{{"error": "{message}"}}',
        status_code=404,
        media_type="application/json",
        headers={"Cache-Control": "no-cache"},
    )


@public_router.get(
    "/tuf/metadata/{name}",
    summary="TUF metadata: N.root.json, timestamp.json, N.snapshot.json, N.targets.json",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}, 404: {"description": "no such file"}},
)
def metadata(name: str, request: Request) -> Response:
    state = request.app.state
    match = NAME.match(name)
    if match is None:
        return _not_found(
            "TUF metadata names are N.root.json, timestamp.json, N.snapshot.json, N.targets.json"
        )
    if match.group(3):
        data = state.tuf_cache.timestamp(state.store)
        cache = "no-cache"
    else:
        data = state.tuf_cache.numbered(state.store, match.group(2), int(match.group(1)))
        cache = IMMUTABLE
    if data is None:
        return _not_found(f"no {name} here")
    return Response(data, media_type="application/json", headers={"Cache-Control": cache})


class RootBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root: str = Field(description="the root metadata file's text, exactly as signed")


class TargetsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    targets: str = Field(description="the targets metadata file's text, exactly as signed")


def _bytes(text: str, what: str) -> bytes:
    return text.encode("utf-8")  # its size and form: tuf_repo.parse


@admin_router.get("", summary="Each TUF role's version and expiry, and what needs doing")
def tuf_status(request: Request) -> dict[str, Any]:
    state = request.app.state
    repo: TufRepository = state.tuf
    now = state.settings.clock()
    root = repo.root()
    roles = {}
    for e in repo.expiries():
        roles[e.role] = {
            "version": e.version,
            "expires": e.expires,
            "seconds_left": round(e.left(now), 3),
            "warning": warning(e, now),
        }
    if root is not None:
        for name, role in root.signed.roles.items():
            roles.setdefault(name, {}).update(keyids=list(role.keyids), threshold=role.threshold)
    return {"enabled": root is not None, "roles": roles, "problems": repo.problems(now)}


@admin_router.post("/root", status_code=201, summary="Install a new (or the first) TUF root")
async def upload_root(body: RootBody, request: Request, caller: Caller) -> dict[str, Any]:
    state = request.app.state
    repo: TufRepository = state.tuf
    now = state.settings.clock()
    md, notes = await anyio.to_thread.run_sync(repo.install_root, _bytes(body.root, "root"), now)
    state.tuf_cache.forget_timestamp()
    _audit(state, now, caller, "tuf.root", {"version": md.signed.version})
    return {"version": md.signed.version, "notes": notes}


@admin_router.post(
    "/targets", status_code=201, summary="Install targets re-signed by the targets key"
)
async def upload_targets(body: TargetsBody, request: Request, caller: Caller) -> dict[str, Any]:
    """A new targets version without a release: to extend its expiry, to sign it with a
    rotated targets key, or to drop old entries (`keys sign-targets`)."""
    state = request.app.state
    repo: TufRepository = state.tuf
    now = state.settings.clock()
    root = repo.root()
    if root is None:
        raise InvalidRequestError("this control plane has no TUF root: upload one first")
    data = _bytes(body.targets, "targets")
    known = known_entries(state.store.snapshot(now).processes)

    def install():
        md = repo.check_targets(data, root, known, {}, now)
        repo.signers(root.signed)  # 503 before anything is written

        def write() -> None:
            with state.store.engine.begin() as conn:
                repo.write_targets(conn, data, md, now)
                _record(conn, now, caller, "tuf.targets", {"version": md.signed.version})

        repo.retrying(write, md.signed.version)
        return md

    md = await anyio.to_thread.run_sync(install)
    state.tuf_cache.forget_timestamp()
    return {"version": md.signed.version, "entries": len(md.signed.targets)}


def _audit(state, now: float, caller: str, action: str, detail: dict) -> None:
    with state.store.engine.begin() as conn:
        _record(conn, now, caller, action, detail)
