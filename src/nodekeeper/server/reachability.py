"""`POST /v1/reachability`: dial a node back from outside and say what was found
(decision 082).

Signed like reports (``version.reports``: the body's ed25519 signature, the node ID in
the body must be the signer's). The body: ``{"node_id": ..., "address": "HOST:PORT"}``,
the node's declared public address. What may be dialled and how often is decided in
``reachability_rules`` (pure), the rate limits are claimed in the database
(``reachability_store``), the dials are ``reachability_probe``'s. Answers: 200 with the
result; 400 a body that is not one; 401 unsigned or another node's key; 403 a declared
host that is not the requester's address; 429 with Retry-After when a limit says no or
this replica has too many checks in flight.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nodekeeper.version.nodeid import InvalidNodeIdError, parse_node_id
from nodekeeper.version.reports import PUBLIC_KEY_HEADER, SIGNATURE_HEADER, ReportAuthError
from nodekeeper.version.reports import verify_signature as verify_signed

from . import reachability_probe, reachability_store
from .reachability_rules import (
    MAX_BODY,
    TCP_DEADLINE,
    UDP_DEADLINE,
    Refusal,
    check_declared,
    client_address,
    outcome,
    parse_declared,
    parse_ip,
    show_address,
)

router = APIRouter(tags=["reachability"])

RESOLVE_DEADLINE = 2.0
# Checks in flight on one replica; beyond it a request is told to come back (429), so a
# burst cannot use up the replica's sockets or threads.
MAX_IN_FLIGHT = 64


class ReachabilityRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    node_id: str = Field(max_length=128)
    address: str = Field(max_length=300)


async def _read_limited(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    too_big = Refusal(400, f"the request body may be at most {MAX_BODY} bytes")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise too_big
    return bytes(body)


def _parse(body: bytes, headers: Any) -> tuple[ReachabilityRequest, str]:
    """The request and the node's ID in hex, or a Refusal (401 before 400: nothing
    unsigned is even parsed)."""
    try:
        signer = verify_signed(body, headers.get(PUBLIC_KEY_HEADER), headers.get(SIGNATURE_HEADER))
    except ReportAuthError as exc:
        raise Refusal(401, str(exc).replace("reports", "reachability requests")) from None
    try:
        parsed = ReachabilityRequest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise Refusal(
            400,
            f"not a reachability request ({where}: {first['msg']}); send "
            '{"node_id": "<node ID>", "address": "HOST:PORT"} and nothing else',
        ) from None
    try:
        claimed = parse_node_id(parsed.node_id)
    except InvalidNodeIdError as exc:
        raise Refusal(400, f"node_id: {exc}") from None
    if claimed != signer:
        raise Refusal(401, "the request was signed by another node's key")
    return parsed, claimed.hex()


async def _resolve(host: str, port: int) -> list[str]:
    if parse_ip(host) is not None:
        return [host]
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_DEADLINE):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise Refusal(
            400, f"{host} did not resolve within {RESOLVE_DEADLINE:g} s; check its DNS records"
        ) from None
    except (OSError, UnicodeError) as exc:
        raise Refusal(
            400, f"{host} does not resolve ({exc}); check the node's external address"
        ) from None
    return [str(info[4][0]) for info in infos]


def _refused(refusal: Refusal) -> JSONResponse:
    return JSONResponse(
        {"error": refusal.message}, status_code=refusal.status, headers=refusal.headers()
    )


@router.post("/v1/reachability", summary="Dial a node back and say whether it is reachable")
async def check_reachability(request: Request) -> JSONResponse:
    state = request.app.state
    slots: asyncio.Semaphore | None = getattr(state, "reachability_slots", None)
    if slots is None:
        slots = state.reachability_slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    if slots.locked():
        return _refused(Refusal(429, "too many checks in flight; ask again shortly", 10.0))
    async with slots:
        try:
            return JSONResponse(await _check(request))
        except Refusal as refusal:
            return _refused(refusal)


async def _check(request: Request) -> dict[str, Any]:
    state = request.app.state
    settings = state.settings
    body = await _read_limited(request)
    parsed, node_hex = _parse(body, request.headers)
    source = client_address(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        settings.trusted_proxies,
    )
    host, port = parse_declared(parsed.address)
    check_declared(host, await _resolve(host, port), source)
    now = settings.clock()
    await anyio.to_thread.run_sync(
        lambda: reachability_store.claim(
            state.store, node_hex, str(source), parsed.address, now, settings.reachability
        )
    )
    ip = str(source)  # only ever the requester's own address
    tcp, udp = await asyncio.gather(
        reachability_probe.tcp_check(ip, port, TCP_DEADLINE),
        reachability_probe.udp_check(ip, port, UDP_DEADLINE),
    )
    result = outcome(show_address(source, port), port, tcp, udp, checked_at=now)
    await anyio.to_thread.run_sync(lambda: reachability_store.finish(state.store, node_hex, result))
    return result
