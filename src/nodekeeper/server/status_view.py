"""`rollout status` as text that stays readable in an 80-column terminal.

One block per process, label and value per line, instead of a wide table: a table of
eight columns folds its figures ("1.120.…") at 80 columns, while a value line wraps at
word boundaries and keeps every figure whole. What nodes report (last 7 days) is one
line per version.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from rich.console import Console
from rich.table import Table

from nodekeeper.version.versions import parse_version


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _percent(row: dict[str, Any]) -> str:
    return "-" if row["percent"] is None else f"{row['percent']:.2f} %"


def _rate(row: dict[str, Any]) -> str:
    if row["target"] is None:
        return "-"
    if row.get("plan"):
        return "staged"
    return "by hand" if not row["rate_per_day"] else f"{row['rate_per_day']:g} %/day"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


SHOWN_REPORTS = 3  # the rest are in --json


def _pause_lines(pause: dict[str, Any]) -> list[tuple[str, str]]:
    who = "the health check" if pause["by"] == "auto" else "the operator"
    lines = [("  paused", f"by {who} at {_when(pause['at'])} UTC: {pause['why']}")]
    reports = pause.get("reports") or []
    for i, report in enumerate(reports[:SHOWN_REPORTS]):
        lines.append(
            (
                "  deciding" if i == 0 else "",
                f"node {report['node_id'][:12]}… {report['kind']}: {report['message']}",
            )
        )
    if len(reports) > SHOWN_REPORTS:
        lines.append(("", f"and {len(reports) - SHOWN_REPORTS} more (--json)"))
    if pause["by"] == "auto":
        lines.append(("", "resume or abort it: `rollout resume` / `rollout abort`"))
    return lines


def _plan_lines(plan: dict[str, Any]) -> list[tuple[str, str]]:
    stages = " → ".join(f"{s:g}" for s in plan["stages"])
    lines = [("  stages", f"{stages} %, each held {_duration(plan['soak_seconds'])} at least")]
    place = f"stage {plan['stage'] + 1} of {len(plan['stages'])}"
    here = f"{place} since {_when(plan['stage_since'])} UTC"
    if plan["next_stage_at"] is not None:
        here += f"; next not before {_when(plan['next_stage_at'])} UTC"
    lines.append(("", here))
    return lines


def _reported(reported: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for version, seen in sorted(reported.items(), key=lambda kv: parse_version(kv[0])):
        line = f"{version}: {seen['nodes']} nodes, {seen['failures']} failures"
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(seen["failures_by_kind"].items()))
        lines.append(f"{line} ({kinds})" if kinds else line)
    return lines or ["nothing in the last 7 days"]


def process_grid(row: dict[str, Any]) -> Table:
    """One process as label/value lines; values wrap at word boundaries when narrow."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row(row["process"], f"minimum {row['minimum']}, suggested {row['suggested'] or '-'}")
    if row["target"] is None:
        grid.add_row("  rollout", "none")
    else:
        grid.add_row(
            "  rollout", f"{row['target']} at {_percent(row)}, {row['state']}, {_rate(row)}"
        )
        when = f"started {_when(row['started_at'])} UTC"
        if row["eta_complete"] is not None and row["state"] == "running":
            when += f"; 100 % at {_when(row['eta_complete'])} UTC"
        grid.add_row("", when)
        if row["state"] == "aborted":
            grid.add_row("", "aborted: not offered any more; nodes keep what they run")
        extra = []
        if row.get("pause"):
            extra += _pause_lines(row["pause"])
        if row.get("plan") and row["state"] != "aborted":
            extra += _plan_lines(row["plan"])
        if row.get("health") and row["state"] in ("running", "paused"):
            extra.append(("  health", row["health"]["why"]))
        for label, value in extra:
            grid.add_row(label, value)
    grid.add_row("  published", ", ".join(row["versions"]))
    for i, line in enumerate(_reported(row["reported"])):
        grid.add_row("  nodes report" if i == 0 else "", line)
    return grid


def render_status(rows: list[dict[str, Any]], width: int | None = 80) -> str:
    """The text `rollout status` prints; ``width`` None means the terminal's width."""
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False, color_system=None)
    if not rows:
        console.print("no processes yet; publish one with `nodekeeper release publish`")
    for i, row in enumerate(rows):
        if i:
            console.print()
        console.print(process_grid(row))
    # rich pads every line to the width; trailing blanks only get in a reader's way
    return "".join(line.rstrip() + "\n" for line in out.getvalue().splitlines())
