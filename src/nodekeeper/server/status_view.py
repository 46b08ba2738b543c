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
    return "by hand" if not row["rate_per_day"] else f"{row['rate_per_day']:g} %/day"


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
