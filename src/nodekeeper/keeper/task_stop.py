"""End background tasks for good when the keeper stops.

One ``cancel()`` is not always enough on Python 3.11 (Debian 12's): ``asyncio.wait_for``
returns the inner result instead of raising when the cancellation arrives in the same
loop turn as that result, so a task looping on it carries on (CPython gh-86296, fixed in
3.12). A keeper stop then waited forever on such a task, its loop idle: seen twice in
full test runs, the second time with faulthandler's stacks showing the loop in
``select``. So the tasks are cancelled again until they end, within a deadline, and any
that outlive it are named in the log instead of holding the stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

log = logging.getLogger("nodekeeper.keeper")

#: How often a task that swallowed its cancellation is cancelled again.
RECANCEL_SECONDS = 0.2


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], deadline: float) -> list[str]:
    """Cancel ``tasks`` and wait for them, cancelling again those that go on, at most
    ``deadline`` seconds. Returns the names of tasks still running at the deadline (logged
    as a warning; they are left to the event loop's own end)."""
    end = time.monotonic() + deadline
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        left = end - time.monotonic()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_SECONDS, left))
    stuck = sorted(task.get_name() for task in pending)
    if stuck:
        log.warning("still running after %g s of the keeper's stop: %s", deadline, ", ".join(stuck))
    return stuck
