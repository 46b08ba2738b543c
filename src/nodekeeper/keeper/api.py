"""The keeper's status API on loopback: ``GET /status`` (JSON) and ``GET /metrics``.

Read-only and unauthenticated, which is why it only ever binds a loopback address (the
config refuses anything else). The tray app and ``nodekeeper status`` read it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from nodekeeper.keeper import loopback, metrics

JSON = "application/json"


async def serve_status(
    host: str, port: int, snapshot: Callable[[], dict[str, Any]]
) -> asyncio.Server:
    async def handle(method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET\n"
        if path in ("/", "/status"):
            return 200, JSON, json.dumps(snapshot(), indent=1).encode() + b"\n"
        if path == "/metrics":
            return 200, metrics.CONTENT_TYPE, metrics.render(snapshot)
        return 404, "text/plain", b"not found; try /status or /metrics\n"

    return await loopback.serve(host, port, handle)
