"""`nodekeeper update check`: ask the running keeper for a check cycle now and print
its decision (the status API's ``POST /update/check``, see ``keeper.api``).

Exit codes: 0 the keeper checked and decided; 1 no keeper answers, the control plane
could not be reached, an update is being carried out, or the keeper did not decide in
time; 2 the keeper has no ``[update]`` table (a configuration matter).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from nodekeeper.cli.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandError
from nodekeeper.keeper.api import CHECK_PATH
from nodekeeper.keeper.status_view import rollout_sentence


def run_update_check(base_url: str, timeout: float, as_json: bool) -> int:
    from nodekeeper.keeper import loopback

    if not timeout > 0:
        raise CommandError(f"--timeout must be a positive number of seconds, not {timeout}", 2)
    url = base_url + CHECK_PATH
    try:
        response = asyncio.run(loopback.request("POST", url, timeout=timeout))
    except loopback.HTTPError as exc:
        raise CommandError(f"no keeper answering at {url} ({exc}); is it running?") from None
    try:
        data = json.loads(response.body)
    except ValueError:
        data = None
    if response.status == 405 or not isinstance(data, dict):
        raise CommandError(
            f"{url} answered HTTP {response.status}: that keeper does not offer `update "
            "check` (an older version?)"
        )
    if response.status == 404:
        raise CommandError(str(data.get("error")), EXIT_USAGE)
    if response.status == 504:
        raise CommandError(str(data.get("error")))
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        sys.stdout.write(render_check(data))
    if response.status == 409:
        return EXIT_FAILURE
    return EXIT_OK if (data.get("check") or {}).get("ok") else EXIT_FAILURE


def render_check(data: dict[str, Any]) -> str:
    """The answer for people (pure)."""
    lines: list[str] = []
    if data.get("busy"):
        lines.append(
            f"an update to {data.get('updating')} is being carried out; no check now "
            "(try again when it is done: `nodekeeper status` shows its step)"
        )
        return "\n".join(lines) + "\n"
    check = data.get("check") or {}
    decision = data.get("decision")
    if not check.get("ok"):
        lines.append(f"the check failed: {check.get('error', 'no answer')}")
        if decision:
            lines.append(f"the last decision stands: {decision['reason']}")
        return "\n".join(lines) + "\n"
    if decision is None:
        lines.append("checked; no decision was made (see `nodekeeper status`)")
        return "\n".join(lines) + "\n"
    if decision.get("target"):
        lines.append(f"updating to {decision['target']}: {decision['reason']}")
        lines.append("follow it with `nodekeeper status`")
    else:
        lines.append(f"no update: {decision['reason']}")
    why = rollout_sentence(decision)
    if why:
        lines.append(why)
    return "\n".join(lines) + "\n"
