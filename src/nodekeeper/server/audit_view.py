"""``nodekeeper audit``: the admin changes, newest first, one per line at the terminal's
width (pure; the command fetches ``GET /v1/admin/audit``).

Each line: local time, the action, who made it (the caller's address and the token's
name, as the admin API recorded them) and its details as ``key=value``. A line longer than
the terminal is cut with an ellipsis, so the details go last; ``--json`` has everything.
"""

from __future__ import annotations

import time
from typing import Any


def _detail(detail: Any) -> str:
    if not isinstance(detail, dict):
        return str(detail)
    return " ".join(f"{key}={value}" for key, value in detail.items())


def audit_lines(entries: list[dict[str, Any]], width: int = 80) -> list[str]:
    if not entries:
        return ["no admin changes recorded yet"]
    lines = []
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(entry["at"])))
        text = f"{when}  {entry['action']}  by {entry['remote']}  {_detail(entry.get('detail'))}"
        lines.append(text if len(text) <= width else text[: width - 1] + "…")
    return lines
