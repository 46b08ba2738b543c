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


class StopRequest:
    """Set once by a signal or POST /shutdown; the run loop watches it. It exists before
    the node is up, so a stop asked for during migrations is honoured right after them."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""

    def request(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


@dataclass
class NodeState:
    version: str
    node_id: str
    store: PieceStore
    shutdown_token: str
    stop: StopRequest = field(default_factory=StopRequest)
    started: float = field(default_factory=time.monotonic)
    inflight: InFlight = field(default_factory=InFlight)

    def pulse(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "node_id": self.node_id,
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "schema_version": self.store.schema_version,
            "used_bytes": self.store.used_bytes,
            "allocated_bytes": self.store.allocated_bytes,
            "stopping": self.stop.is_set(),
        }
