"""One signed POST of one report, and what came back, whatever came back.

Everything the network can do (refuse, stall, reset, answer garbage, answer a huge body)
ends as an ``Answer``; nothing from here raises into the reporter except cancellation.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nodekeeper.updater.netabort import DEFAULT_REQUEST_DEADLINE
from nodekeeper.version.reports import Report, encode_report, sign_report

REPORTS_PATH = "/v1/reports"
# An error body is only read for the log line; a server (or something posing as one)
# cannot make the keeper read more than this.
MAX_ANSWER_BYTES = 4096
MAX_DETAIL_CHARS = 300


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer at all (refused, timed out, reset)
    retry_after: str | None = None
    detail: str = ""


def reports_url(server_url: str) -> str:
    return server_url.rstrip("/") + REPORTS_PATH


async def post_report(
    client: httpx.AsyncClient,
    url: str,
    report: Report,
    key: Ed25519PrivateKey,
    *,
    deadline: float = DEFAULT_REQUEST_DEADLINE,
) -> Answer:
    """POST ``report``; the whole exchange must end within ``deadline`` seconds. httpx's
    timeouts are per read, so a server that trickles its answer one byte at a time
    would otherwise hold the sender (and every queued report behind it) for as long as
    it likes. Cancelling the awaiting task ends the request at once."""
    body = encode_report(report)
    headers = {"Content-Type": "application/json", **sign_report(body, key)}
    try:
        async with asyncio.timeout(deadline):
            async with client.stream("POST", url, content=body, headers=headers) as response:
                head = await _read_some(response)
                return Answer(
                    response.status_code, response.headers.get("retry-after"), _detail(head)
                )
    except TimeoutError:
        return Answer(None, None, f"no complete answer within {deadline:g} s (deadline)")
    except httpx.HTTPError as exc:
        return Answer(None, None, f"{type(exc).__name__}: {exc}"[:MAX_DETAIL_CHARS] or "no answer")
    except (OSError, ValueError) as exc:  # e.g. an invalid URL, a socket error httpx let by
        return Answer(None, None, f"{type(exc).__name__}: {exc}"[:MAX_DETAIL_CHARS])


async def _read_some(response: httpx.Response) -> bytes:
    got = bytearray()
    async for chunk in response.aiter_raw():
        got += chunk
        if len(got) >= MAX_ANSWER_BYTES:
            break
    return bytes(got[:MAX_ANSWER_BYTES])


def _detail(body: bytes) -> str:
    """The server's ``{"error": ...}`` text, or the start of whatever the body was."""
    text = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        text = parsed["error"]
    return " ".join(text.split())[:MAX_DETAIL_CHARS]
