"""What the node's updater tells the status API: the last outcome, the last failure and
the state, as one snapshot.

Kept apart from the machine so that the machine's code is the steps, and so the status
fields (which the quickstart view and operators read) are defined in one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .notify import Notifier
from .state import UpdateState

# The outcomes that are a failure the status keeps showing after later successes.
FAILURES = ("failed", "rolled-back", "held")


class Outcomes:
    def __init__(self, notify: Notifier, clock: Callable[[], float] = time.time) -> None:
        self.notify = notify
        self.clock = clock
        self.last_outcome: dict[str, Any] | None = None
        # The last update that did not commit (failed, rolled back, held): kept after a
        # later success too, so the status can say what went wrong and when.
        self.last_failure: dict[str, Any] | None = None

    def outcome(self, outcome: str, message: str, target: str, **extra: Any) -> None:
        self.last_outcome = {
            "outcome": outcome,
            "target": target,
            "message": message,
            "at": self.clock(),
            **extra,
        }
        if outcome in FAILURES:
            self.last_failure = self.last_outcome

    def snapshot(self, state: UpdateState) -> dict[str, Any]:
        return {
            "process": state.process,
            "current": state.current,
            "previous": state.previous,
            "running": state.running_version(),
            "failed": sorted(state.failed),
            "held": state.held.to_json() if state.held else None,
            "step": state.inflight.step.value if state.inflight else None,
            "target": state.inflight.target if state.inflight else None,
            "last_outcome": self.last_outcome,
            "last_failure": self.last_failure,
            "last_error": self.notify.last_error,
        }
