"""`POST /v1/reports`: outcomes and errors from keepers, signed with the node's key.

Nothing is stored unless the signature verifies and the signer is the node the report
names (401 otherwise). Each node may send ``report_rate_per_minute`` reports a minute
(429 with Retry-After beyond that); a re-sent report (same report_id) is accepted once.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from nodekeeper.version.reports import (
    MAX_REPORT_BYTES,
    PUBLIC_KEY_HEADER,
    SIGNATURE_HEADER,
    Report,
    ReportAuthError,
    check_sender,
    verify_signature,
)

from .errors import ControlPlaneError, InvalidRequestError
from .store import ReportOutcome, add_report

router = APIRouter(tags=["reports"])


class ReportRejected(ControlPlaneError):
    status_code = 401


class ReportTooLarge(ControlPlaneError):
    status_code = 413


async def _read_limited(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_REPORT_BYTES:
        raise ReportTooLarge(f"a report may be at most {MAX_REPORT_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_REPORT_BYTES:
            raise ReportTooLarge(f"a report may be at most {MAX_REPORT_BYTES} bytes")
    return bytes(body)


@router.post("/v1/reports", summary="Take one signed report from a keeper", status_code=202)
async def take_report(request: Request) -> JSONResponse:
    body = await _read_limited(request)
    try:
        signer = verify_signature(
            body, request.headers.get(PUBLIC_KEY_HEADER), request.headers.get(SIGNATURE_HEADER)
        )
    except ReportAuthError as exc:
        raise ReportRejected(str(exc)) from None
    try:
        report = Report.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidRequestError(f"malformed report: {exc.errors()[0]['msg']}") from None
    try:
        check_sender(report, signer)
    except ReportAuthError as exc:
        raise ReportRejected(str(exc)) from None
    app = request.app.state
    outcome = await anyio.to_thread.run_sync(
        lambda: add_report(
            app.store,
            report,
            received_at=app.settings.clock(),
            remote=request.client.host if request.client else "unknown",
            per_minute=app.settings.report_rate_per_minute,
        )
    )
    if outcome == ReportOutcome.RATE_LIMITED:
        return JSONResponse(
            {"error": "too many reports from this node; send again later"},
            status_code=429,
            headers={"Retry-After": "60"},
        )
    if outcome == ReportOutcome.DUPLICATE:
        return JSONResponse({"stored": False, "duplicate": True}, status_code=200)
    return JSONResponse({"stored": True}, status_code=202)
