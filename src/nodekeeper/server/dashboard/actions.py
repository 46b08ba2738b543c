"""The dashboard's buttons, carried out by the admin API's own handlers.

A button does exactly what the same admin API call does: the same policy checks, the
same Store call in one transaction with its audit row, the same refresh of the served
announcement. Only the caller recorded in the audit log differs ("<address> (dashboard)").

Abort comes with the auto-pause work (``POST /v1/admin/processes/{process}/rollout/abort``,
handled by ``admin.abort_rollout``). The dashboard looks that handler up in the admin
module, so the button appears exactly when the admin API has it; once both are merged,
`perform` can call ``admin.abort_rollout`` directly. (Not through the app's routes:
FastAPI wraps included routers in private objects.)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from fastapi import Request

from .. import admin, policy
from ..errors import InvalidRequestError

LABELS = {"pause": "Pause", "resume": "Resume", "set": "Set percent", "abort": "Abort"}


def _abort_handler() -> Callable[..., Any] | None:
    handler = getattr(admin, "abort_rollout", None)
    if callable(handler) and set(inspect.signature(handler).parameters) <= {
        "process",
        "request",
        "caller",
    }:
        return handler
    return None


def available() -> set[str]:
    found = {"pause", "resume", "set"}
    if _abort_handler() is not None:
        found.add("abort")
    return found


def parse_percent(text: str | None) -> float:
    """The percent a form sent, or an error saying what is allowed (in the words typed)."""
    shown = (text or "").strip()
    try:
        percent = float(shown.rstrip("%").strip())
    except ValueError:
        percent = math.nan
    if not math.isfinite(percent):
        raise InvalidRequestError(f"percent must be a number from 0 to 100, got {shown!r}")
    if not 0 <= percent <= 100:
        raise InvalidRequestError(f"percent must be between 0 and 100, got {shown}")
    policy.check_percent(percent)  # the admin API's own rule, should it ever narrow
    return percent


def perform(
    request: Request, action: str, process: str, percent: float | None, caller: str
) -> dict[str, Any]:
    """Carry out ``action``; raises the admin API's ControlPlaneError on refusal."""
    if action == "pause":
        return admin.pause_rollout(process, request, caller)
    if action == "resume":
        return admin.resume_rollout(process, request, caller)
    if action == "set":
        if percent is None:
            raise InvalidRequestError("give the percent to set, from 0 to 100")
        return admin.set_rollout(process, admin.RolloutSetBody(percent=percent), request, caller)
    if action == "abort":
        handler = _abort_handler()
        if handler is not None:
            wanted = inspect.signature(handler).parameters
            given = {"process": process, "request": request, "caller": caller}
            return handler(**{k: v for k, v in given.items() if k in wanted})
    raise InvalidRequestError(
        f"unknown action {action!r}; the dashboard offers: " + ", ".join(sorted(available()))
    )
