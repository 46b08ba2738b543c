"""Keeps the rendered announcement of one replica current.

The body is serialized once per change, never per request: a change is a new store
generation (an admin change on any replica) or a new ramp tick. A background task polls
the generation, a single-row read, every ``poll_interval`` seconds.
"""

from __future__ import annotations

import threading

from . import ramp
from .document import RenderedDocument, render
from .settings import ServerSettings
from .store import Store


class DocumentCache:
    def __init__(self, store: Store, settings: ServerSettings) -> None:
        self._store = store
        self._settings = settings
        self._lock = threading.Lock()
        self.current: RenderedDocument | None = None
        self.renders = 0  # how many times the body was serialized (shown in /healthz)

    def _tick(self) -> float:
        return ramp.quantize(self._settings.clock(), self._settings.ramp_tick)

    def refresh(self, force: bool = False) -> RenderedDocument:
        """Re-render when the generation moved, or the tick moved while a ramp runs."""
        with self._lock:
            at = self._tick()
            current = self.current
            if (
                not force
                and current is not None
                and (current.evaluated_at == at or not current.moving)
                and current.generation == self._store.generation()
            ):
                return current
            snapshot = self._store.snapshot(at)
            self.current = render(snapshot, at, self._settings.public_url)
            self.renders += 1
            return self.current
