"""Liveness probes: is the node answering? One attempt each, bounded by a timeout.

- ``http``: GET the pulse URL; healthy on 2xx. A JSON object body is kept as the last pulse
  (version, node id, uptime ...) for the status API.
- ``tcp``: the port accepts a connection.
- ``process``: the process exists (the exit itself is seen elsewhere, at once), so this
  kind never reports a hang; for nodes with no endpoint at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any, Protocol

from nodekeeper.keeper import loopback


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    # Why it failed ("" when ok), e.g. "no answer within 5 s", "HTTP 503".
    detail: str
    seconds: float
    pulse: dict[str, Any] | None = None


class Probe(Protocol):
    kind: str

    async def check(self) -> ProbeResult: ...


class HttpProbe:
    kind = "http"

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout

    async def check(self) -> ProbeResult:
        began = time.monotonic()
        try:
            response = await loopback.request("GET", self.url, timeout=self.timeout)
        except loopback.HTTPError as exc:
            return ProbeResult(False, str(exc), time.monotonic() - began)
        took = time.monotonic() - began
        if not 200 <= response.status < 300:
            return ProbeResult(False, f"HTTP {response.status}", took)
        pulse = None
        with contextlib.suppress(ValueError):
            decoded = json.loads(response.body)
            pulse = decoded if isinstance(decoded, dict) else None
        return ProbeResult(True, "", took, pulse)


class TcpProbe:
    kind = "tcp"

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    async def check(self) -> ProbeResult:
        began = time.monotonic()
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout
            )
        except TimeoutError:
            return ProbeResult(False, f"no connection within {self.timeout:g} s", self.timeout)
        except OSError as exc:
            return ProbeResult(False, exc.strerror or str(exc), time.monotonic() - began)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return ProbeResult(True, "", time.monotonic() - began)


class ProcessProbe:
    kind = "process"

    async def check(self) -> ProbeResult:
        # The supervisor only probes a node whose process has not exited.
        return ProbeResult(True, "", 0.0)
