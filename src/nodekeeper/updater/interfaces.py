"""What the updater needs from the outside, declared once: the node it switches, the
reports it sends and the error index it writes.

The updater never imports the keeper (the import contracts say so); the keeper passes
its parts in, and these protocols are the whole of what the updater may call on them.
Tests pass small scripted stand-ins that satisfy the same protocols.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class Node(Protocol):
    """The supervised node: ``keeper.supervisor.Supervisor``."""

    def set_command(self, argv: list[str] | None) -> None: ...

    @property
    def command(self) -> list[str] | None: ...

    async def switch(self, argv: list[str]) -> int: ...

    @property
    def command_generation(self) -> int: ...

    def observe(self) -> Any: ...

    def next_change(self) -> asyncio.Event:
        """Set at the next change of what ``observe`` shows; take it before observing."""
        ...


class Reports(Protocol):
    """Reports to the control plane: ``keeper.reports.Reporter``."""

    def report(
        self,
        kind: Any,
        message: str,
        *,
        process: str,
        version: str,
        target_version: str | None = None,
        **details: Any,
    ) -> str | None: ...


class ErrorSink(Protocol):
    """The error index the operator's tools read: ``nodekeeper.logs.ErrorIndex`` (or the
    keeper's sink that also reports)."""

    def record(self, source: str, level: int, message: str, **fields: Any) -> Any: ...
