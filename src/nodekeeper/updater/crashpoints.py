"""Test instrumentation: the keeper SIGKILLs itself at a named point of an update.

The crash tests prove that recovery (``steps.STEPS``) works from every step; they need
the keeper to die at exact points, which only the keeper itself can hit reliably.
Unset (always, outside tests) it does nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from .state import Step

CRASH_ENV = "NODEKEEPER_TEST_CRASH_AT"


class CrashHook:
    """``NODEKEEPER_TEST_CRASH_AT`` makes the keeper SIGKILL itself, for the crash tests:

    - ``STEP``: right after STEP is journaled, before any of its side effects;
    - ``STEP!``: right before STEP is journaled (after the previous step's effects);
    - ``STEP+SECONDS``: SECONDS after STEP is journaled, from a timer thread: an instant
      in the middle of the step's work (a download or an unpack).

    Unset (always, outside tests) it does nothing."""

    def __init__(self, spec: str | None = None) -> None:
        self.spec = (spec if spec is not None else os.environ.get(CRASH_ENV, "")).strip()

    def before(self, step: Step) -> None:
        if self.spec == f"{step.value}!":
            self._die()

    def after(self, step: Step) -> None:
        if self.spec == step.value:
            self._die()
        name, plus, seconds = self.spec.partition("+")
        if plus and name == step.value:
            timer = threading.Timer(float(seconds), self._die)
            timer.daemon = True
            timer.start()

    @staticmethod
    def _die() -> None:
        logging.getLogger("nodekeeper.updater").warning("test crash point reached: SIGKILL")
        os.kill(os.getpid(), signal.SIGKILL)
