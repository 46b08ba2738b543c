"""Read-only endpoints that nodes and anyone may call."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from nodekeeper.version.schema import PLATFORM

from . import policy
from .document import artifact_url, etag_matches
from .errors import InvalidRequestError, NotFoundError
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import ControlPlaneCollector
from .metrics import render as render_metrics
from .seed_document import render_seed
from .store import version_summary

router = APIRouter()


# HEAD is registered as its own route, out of the schema: one route for both methods
# would give both operations the same id (FastAPI warns "Duplicate Operation ID").
@router.head("/", include_in_schema=False)
@router.get(
    "/",
    summary="The version announcement (Storj-compatible, with per-platform artifacts)",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}, 304: {"description": "unchanged"}},
)
def announcement(request: Request) -> Response:
    doc = request.app.state.documents.current
    headers = {"ETag": doc.etag, "Cache-Control": "no-cache"}
    inm = request.headers.get("if-none-match")
    if inm is not None and etag_matches(inm.encode("latin-1"), doc.etag.encode()):
        return Response(status_code=304, headers=headers)
    return Response(doc.body, media_type="application/json", headers=headers)


@router.head("/seed", include_in_schema=False)
@router.get(
    "/seed",
    summary="The announcement in the seed document's form (allowed_version_minimum, ...)",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}, 304: {"description": "unchanged"}},
)
def seed_announcement(request: Request) -> Response:
    """Built from the snapshot and instant of the document ``/`` serves now, so the two
    never disagree (seed_document.py says how the fields map)."""
    doc = request.app.state.documents.current
    body, etag = render_seed(doc.snapshot, doc.evaluated_at)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    inm = request.headers.get("if-none-match")
    if inm is not None and etag_matches(inm.encode("latin-1"), etag.encode()):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def _artifact_for(request: Request, process: str, version: str, os: str, arch: str):
    platform = f"{os}_{arch}"
    if not PLATFORM.match(platform):
        raise InvalidRequestError(f"os and arch must be lowercase names, got {os!r}/{arch!r}")
    # The snapshot the served document was made from: no database read per request, and
    # the URL always agrees with the announcement.
    snapshot = request.app.state.documents.current.snapshot
    record = policy.require_process(snapshot.processes, process)
    policy.require_release(record, version)
    artifact = record.releases[version].artifacts.get(platform)
    if artifact is None:
        have = ", ".join(sorted(record.releases[version].artifacts))
        raise NotFoundError(f"{process} {version} has no build for {platform} (has: {have})")
    return record, artifact


@router.get(
    "/processes/{process}/{which}/url",
    summary="Storj's per-platform download URL of the minimum or suggested version",
    response_class=PlainTextResponse,
)
def process_url(
    request: Request,
    process: str,
    which: Literal["minimum", "suggested"],
    os: str = Query(..., description="GOOS-style name, e.g. windows"),
    arch: str = Query(..., description="GOARCH-style name, e.g. amd64"),
) -> PlainTextResponse:
    record = policy.require_process(request.app.state.documents.current.snapshot.processes, process)
    version = record.minimum if which == "minimum" else record.suggested
    _, artifact = _artifact_for(request, process, version, os, arch)
    return PlainTextResponse(artifact_url(artifact, request.app.state.settings.public_url))


@router.head("/download/{process}/{version}/{os}/{arch}", include_in_schema=False)
@router.get(
    "/download/{process}/{version}/{os}/{arch}",
    summary="Redirects to the artifact of one release for one platform",
    status_code=302,
    response_class=RedirectResponse,
)
def download(request: Request, process: str, version: str, os: str, arch: str):
    _, artifact = _artifact_for(request, process, version, os, arch)
    return RedirectResponse(
        artifact_url(artifact, request.app.state.settings.public_url), status_code=302
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics: requests, renders, rollout percentages, nodes by version",
    response_class=Response,
)
def prometheus_metrics(request: Request) -> Response:
    state = request.app.state
    collector = ControlPlaneCollector(
        state.request_counts,
        state.documents,
        lambda since: version_summary(state.store, since),
        state.settings.clock,
        auto_pauses=state.store.auto_pause_counts,
        tuf_expiries=state.tuf.expiries,
    )
    return Response(render_metrics(collector), media_type=METRICS_CONTENT_TYPE)


@router.get("/healthz", summary="Liveness and the store generation this replica serves")
def healthz(request: Request) -> dict:
    doc = request.app.state.documents.current
    return {
        "ok": True,
        "generation": doc.generation,
        "etag": doc.etag,
        "renders": request.app.state.documents.renders,
        "health_checks": request.app.state.health_rounds.count,
    }
