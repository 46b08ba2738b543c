"""The keeper's status API on loopback: ``GET /status`` (JSON), ``GET /metrics``,
``GET /settings``, ``POST /update/check``, and the actions of the tray app and the CLI.

Reads are unauthenticated, which is why it only ever binds a loopback address (the config
refuses anything else). The tray app and ``nodekeeper status`` read it. The actions
(``ACTIONS``: restart, pause, quiet window, settings, setup; ``keeper.control``) need
``Authorization: Bearer <control token>`` (``keeper.control_token``): any local process
can reach loopback, only administrators can read the token (decision 069). Their bodies
are JSON objects; a missing or wrong token is 401 before the body is looked at.

``POST /update/check`` (``nodekeeper update check``) asks the update loop for a check
cycle now and answers with its decision. It is safe to expose on loopback: it runs the
same cycle the keeper runs on its own (never a second one concurrently: callers share
the next cycle), it changes nothing an announcement would not change anyway, and it has
a deadline. Its answers: 200 with ``{"busy", "updating", "check", "decision"}``; 409
with the same when an update is being carried out (no check then); 404 when the keeper
has no ``[update]`` table; 504 when the cycle did not decide within the deadline (it
goes on in the background).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from nodekeeper.keeper import loopback, metrics

if TYPE_CHECKING:
    from nodekeeper.keeper.control import Control

JSON = "application/json"
CHECK_PATH = "/update/check"
# Long enough for a check against a slow control plane (its own request deadline bounds
# it), short enough that a caller is never left hanging.
CHECK_DEADLINE_SECONDS = 120.0
NO_UPDATES = (
    "this keeper has no [update] table: it does not manage updates, so there is nothing "
    "to check (add [update] with server = ... to its config and restart it)"
)

NO_CONTROL = "this keeper serves no actions (its status API was started without them)"
UNAUTHORIZED = (
    "this action needs Authorization: Bearer <the keeper's control token>, which only "
    "administrators can read (<state dir>/control.token): run it elevated or with sudo"
)

Check = Callable[[], Awaitable[dict[str, Any]]]
Action = Callable[["Control", dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]


async def _restart(c: Control, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return await c.restart(body)


async def _pause(c: Control, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return c.pause(body)


async def _quiet_window(c: Control, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return c.quiet_window(body)


async def _settings(c: Control, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return await c.apply_settings(body)


async def _setup(c: Control, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return await c.set_up(body)


# POST path → action; each needs the control token.
ACTIONS: dict[str, Action] = {
    "/node/restart": _restart,
    "/updates/pause": _pause,
    "/updates/quiet-window": _quiet_window,
    "/settings": _settings,
    "/setup": _setup,
}


def _json(status: int, data: Any) -> tuple[int, str, bytes]:
    return status, JSON, json.dumps(data, indent=1).encode() + b"\n"


def find_check(snapshot: Callable[[], dict[str, Any]]) -> Check | None:
    """The ``check_now`` of the object whose ``snapshot`` the API serves (the keeper's
    updater, ``wiring.Updating``); None when updates are not managed."""
    return getattr(getattr(snapshot, "__self__", None), "check_now", None)


async def serve_status(
    host: str,
    port: int,
    snapshot: Callable[[], dict[str, Any]],
    check: Check | None = None,
    check_deadline: float = CHECK_DEADLINE_SECONDS,
    control: Control | None = None,
) -> asyncio.Server:
    check = check or find_check(snapshot)

    async def handle(request: loopback.Request) -> tuple[int, str, bytes]:
        method, path = request.method, request.path
        if path == CHECK_PATH:
            if method != "POST":
                return 405, "text/plain", b"only POST\n"
            return await _check(check, check_deadline)
        if path in ACTIONS and method == "POST":
            return await _act(control, ACTIONS[path], request)
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET\n"
        if path in ("/", "/status"):
            return _json(200, snapshot())
        if path == "/metrics":
            return 200, metrics.CONTENT_TYPE, metrics.render(snapshot)
        if path == "/settings":
            return _json(*control.settings()) if control else _json(404, {"error": NO_CONTROL})
        if path in ACTIONS:
            return 405, "text/plain", b"only POST\n"
        return 404, "text/plain", b"not found; try /status or /metrics\n"

    return await loopback.serve(host, port, handle)


async def _act(
    control: Control | None, action: Action, request: loopback.Request
) -> tuple[int, str, bytes]:
    if control is None:
        return _json(404, {"error": NO_CONTROL})
    if not control.authorized(request.headers.get("authorization")):
        return _json(401, {"error": UNAUTHORIZED})
    try:
        body = json.loads(request.body) if request.body.strip() else {}
    except ValueError as exc:
        return _json(400, {"error": f"the body is not JSON ({exc}): send a JSON object"})
    if not isinstance(body, dict):
        return _json(400, {"error": 'the body must be a JSON object, e.g. {"until": null}'})
    return _json(*await action(control, body))


async def _check(check: Check | None, deadline: float) -> tuple[int, str, bytes]:
    if check is None:
        return _json(404, {"error": NO_UPDATES})
    try:
        # shield: a caller that gives up must not cancel the cycle the others share.
        result = await asyncio.wait_for(asyncio.shield(check()), deadline)
    except TimeoutError:
        return _json(
            504,
            {
                "error": f"the check did not decide within {deadline:g} s (a slow or "
                "unreachable control plane?); it goes on in the background: see "
                "`nodekeeper status`"
            },
        )
    return _json(409 if result.get("busy") else 200, result)
