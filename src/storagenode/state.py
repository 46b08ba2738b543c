"""What the HTTP handlers share with the run loop: one object, no globals."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from storagenode.store import PieceStore


class InFlight:
    """Counts requests being served so that a graceful stop can wait for them."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    @contextmanager
    def track(self) -> Iterator[None]:
        with self._idle:
            self._count += 1
        try:
            yield
        finally:
            with self._idle:
                self._count -= 1
                if self._count == 0:
                    self._idle.notify_all()

    @property
    def count(self) -> int:
        return self._count

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


@dataclass
class NodeState:
    version: str
    node_id: str
    store: PieceStore
    shutdown_token: str
    started: float = field(default_factory=time.monotonic)
    stopping: threading.Event = field(default_factory=threading.Event)
    stop_reason: str = ""
    inflight: InFlight = field(default_factory=InFlight)

    def request_stop(self, reason: str) -> None:
        if not self.stopping.is_set():
            self.stop_reason = reason
            self.stopping.set()

    def pulse(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "node_id": self.node_id,
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "schema_version": self.store.schema_version,
            "used_bytes": self.store.used_bytes,
            "allocated_bytes": self.store.allocated_bytes,
            "stopping": self.stopping.is_set(),
        }
