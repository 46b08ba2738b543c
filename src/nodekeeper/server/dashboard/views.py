"""What the dashboard page shows, built from the admin API's rows (pure).

The rows are those of ``GET /v1/admin/status`` (``status.process_status`` plus what
nodes reported), so the page and `rollout status` never disagree. The fields of the
rollout's health contract (``state``, ``pause``, ``plan``, ``health``) are read with
``.get``: the page works with and without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from nodekeeper.version.versions import parse_version

from .chart import ramp_svg
from .history import RampHistory

# Which buttons a rollout in each state offers (abort only where the server has it).
ACTIONS_BY_STATE = {
    "running": ("pause", "set", "abort"),
    "paused": ("resume", "set", "abort"),
}


_TARGET_ROLE = {"complete": "rolled out", "aborted": "aborted"}


@dataclass
class VersionLine:
    version: str
    roles: list[str]
    published: bool
    nodes: int
    share: float  # of the nodes that reported this process, 0..1
    failures: int
    by_kind: list[tuple[str, int]]


@dataclass
class PauseView:
    by: str  # "auto" | "operator" | what the row says
    at: float | None
    why: str
    numbers: str | None  # one line, or None for an operator's pause
    reports: list[dict[str, Any]]  # node_id, kind, at, message: always present


@dataclass
class PlanView:
    stages: list[tuple[str, str]]  # (label, "done" | "current" | "")
    soak: str
    next_stage_at: float | None


@dataclass
class ProcessView:
    name: str
    state: str
    target: str | None
    percent: float | None
    rate_per_day: float | None
    row: dict[str, Any]
    versions: list[VersionLine]
    chart: Markup | None
    actions: list[str] = field(default_factory=list)
    total_nodes: int = 0
    pause: PauseView | None = None
    plan: PlanView | None = None
    health: str | None = None


# The contract's fields come from another module's rows: each is read defensively, so a
# missing or odd value shows as less detail, never as an error page.


def _number(value: Any, form: str) -> str:
    try:
        return format(float(value), form)
    except (TypeError, ValueError):
        return "?"


def numbers_line(numbers: Any) -> str | None:
    if not isinstance(numbers, dict):
        return None
    n = numbers
    return (
        f"{n.get('candidate', '?')}: {n.get('failed', '?')} of {n.get('updated', '?')} "
        f"updated nodes failed ({_number(n.get('rate'), '.1%')}); "
        f"{n.get('baseline', '?')}: {_number(n.get('baseline_rate'), '.1%')}; "
        f"p = {_number(n.get('p_value'), '.2g')}."
    )


def pause_view(pause: Any) -> PauseView | None:
    if not isinstance(pause, dict):
        return None
    reports = [
        {
            "node_id": str(r.get("node_id", "")),
            "kind": str(r.get("kind", "")),
            "at": r.get("at"),
            "message": str(r.get("message", "")),
        }
        for r in pause.get("reports") or []
        if isinstance(r, dict)
    ]
    at = pause.get("at")
    return PauseView(
        by=str(pause.get("by", "")),
        at=float(at) if isinstance(at, int | float) else None,
        why=str(pause.get("why") or ""),
        numbers=numbers_line(pause.get("numbers")),
        reports=reports,
    )


def plan_view(plan: Any) -> PlanView | None:
    if not isinstance(plan, dict) or not isinstance(plan.get("stages"), list):
        return None
    current = plan.get("stage")
    stages = []
    for i, stage in enumerate(plan["stages"]):
        status = ""
        if isinstance(current, int):
            status = "done" if i < current else "current" if i == current else ""
        stages.append((f"{_number(stage, 'g')} %", status))
    soak = plan.get("soak_seconds")
    next_at = plan.get("next_stage_at")
    return PlanView(
        stages=stages,
        soak=f"{_number(soak / 3600, 'g')} h" if isinstance(soak, int | float) else "?",
        next_stage_at=float(next_at) if isinstance(next_at, int | float) else None,
    )


def health_line(health: Any) -> str | None:
    if not isinstance(health, dict) or "action" not in health:
        return None
    line = str(health["action"])
    if "failed" in health and "updated" in health:
        line += f", {health['failed']} of {health['updated']} updated nodes failed"
    why = str(health.get("why") or "").strip()
    return f"{line}. {why}" if why else f"{line}."


def _version_key(version: str):
    try:
        return (1, parse_version(version))
    except ValueError:  # a node may report something odd; it still gets a line
        return (0, version)


def version_lines(row: dict[str, Any]) -> list[VersionLine]:
    reported: dict[str, dict[str, Any]] = row.get("reported") or {}
    published = set(row.get("versions") or [])
    total = sum(int(seen.get("nodes", 0)) for seen in reported.values())
    lines = []
    for version in sorted(published | set(reported), key=_version_key, reverse=True):
        seen = reported.get(version, {})
        roles = []
        if row.get("target") == version:
            roles.append(_TARGET_ROLE.get(row.get("state") or "", "rolling out"))
        if row.get("suggested") == version:
            roles.append("suggested")
        if row.get("minimum") == version:
            roles.append("minimum")
        nodes = int(seen.get("nodes", 0))
        lines.append(
            VersionLine(
                version=version,
                roles=roles,
                published=version in published,
                nodes=nodes,
                share=nodes / total if total else 0.0,
                failures=int(seen.get("failures", 0)),
                by_kind=sorted((seen.get("failures_by_kind") or {}).items()),
            )
        )
    return lines


def process_view(
    row: dict[str, Any], history: RampHistory | None, available: set[str]
) -> ProcessView:
    state = row.get("state") or "none"
    chart = None
    if history is not None and row.get("target"):
        chart = ramp_svg(history, f"{row['process']} {row['target']}: percent of nodes offered")
    lines = version_lines(row)
    return ProcessView(
        name=row["process"],
        state=state,
        target=row.get("target"),
        percent=row.get("percent"),
        rate_per_day=row.get("rate_per_day"),
        row=row,
        versions=lines,
        chart=chart,
        actions=[a for a in ACTIONS_BY_STATE.get(state, ()) if a in available],
        total_nodes=sum(line.nodes for line in lines),
        pause=pause_view(row.get("pause")),
        plan=plan_view(row.get("plan")),
        health=health_line(row.get("health")),
    )


def short_node(node_hex: str) -> str:
    return node_hex[:12] + "…" if len(node_hex) > 12 else node_hex


def _detail_value(value: Any) -> str:
    """A nested value in one short piece: a table of short scalars in full (the
    auto-pause's numbers), a table of long ones by its keys (a release's artifacts with
    their digests), a list of tables by its length (the deciding reports)."""
    if isinstance(value, dict):
        if all(
            isinstance(v, str | int | float | None) and len(str(v)) <= 24 for v in value.values()
        ):
            return "{" + " ".join(f"{k}={v}" for k, v in value.items()) + "}"
        return " ".join(str(k) for k in value)
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return f"[{len(value)} entries]"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def detail_text(detail: Any) -> str:
    """An audit row's details as key=value, the process left out (the row has its own
    column); `nodekeeper audit --json` has everything."""
    if not isinstance(detail, dict):
        return str(detail)
    return ", ".join(
        f"{key}={_detail_value(value)}" for key, value in detail.items() if key != "process"
    )


def clip(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
