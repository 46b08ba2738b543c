"""`nodekeeper status` for people (pure: status JSON in, text out, 80 columns).

Problems come first, each on a line starting with ``!``: the node held stopped by the
keeper (its storage is gone) and the storage watch's problems (disk nearly full, clock
off, identity missing), the control plane unreachable
(since when), the last update failure, reports waiting, identity problems, a crash loop,
a held update, a firewall that blocks the node's port (with the fix), limits not in
force, logs at their cap. Then the node, then the updater:
what is installed, what the keeper decided and why ("rollout at 40 %, this node's
position 73.7 %: expected in about 8 hours at the current rate"), and when the next
check is. Every line fits ``width`` columns (long values wrap under their label).
"""

from __future__ import annotations

import textwrap
import time
from typing import Any

LABEL = 16
WIDTH = 80


def render_status(data: dict[str, Any], width: int = WIDTH, now: float | None = None) -> str:
    """The whole human status."""
    now = time.time() if now is None else now
    lines: list[str] = []
    problems = status_problems(data, now)
    if problems:
        lines.append("PROBLEMS")
        for problem in problems:
            lines.extend(textwrap.wrap(problem, width, initial_indent="! ", subsequent_indent="  "))
        lines.append("")
    for label, text in status_rows(data, now):
        lines.extend(_row(label, text, width))
    return "\n".join(lines) + "\n"


def _row(label: str, text: str, width: int) -> list[str]:
    head = f"{label:<{LABEL - 1}} "
    if len(head) > LABEL:
        head = label + " "
    return textwrap.wrap(
        text or "-",
        width,
        initial_indent=head,
        subsequent_indent=" " * LABEL,
        break_on_hyphens=False,
    ) or [head.rstrip()]


# -- problems ------------------------------------------------------------------------------

UNSIGNED_WARNING = (
    "releases are not signature-checked: no [update] trusted_root, so whoever controls the "
    "control plane (or holds its admin token) can install anything on this node. Fix: set "
    "[update] trusted_root to your release manager's root.json (decision 085)"
)


def status_problems(data: dict[str, Any], now: float) -> list[str]:
    """What an operator must look at, most important first."""
    problems: list[str] = []
    update = data.get("update") or {}
    reports = data.get("reports") or {}
    hold = data.get("hold")
    if hold:  # the keeper stopped the node on purpose (decision 070)
        problems.append(f"NODE STOPPED BY THE KEEPER: {hold['reason']}. Fix: {hold['fix']}")
    watch = (data.get("watch") or {}).get("problems") or {}
    problems.extend(
        f"{p['message']}. Fix: {p['fix']}" for kind, p in watch.items() if kind != "storage_missing"
    )
    if update.get("held"):
        held = update["held"]
        problems.append(f"UPDATE HELD on {held['version']}: {held['message']}")
    if data.get("crash_loop"):
        problems.append(
            f"the node is in a crash loop ({data.get('recent_failures', 0)} failures in the "
            "window); the keeper keeps restarting it"
        )
    if update.get("unreachable_since") is not None:
        check = update.get("last_check") or {}
        problems.append(
            f"control plane {update.get('server', '')} unreachable since "
            f"{_when(update['unreachable_since'], now)} "
            f"({update.get('failed_checks_in_row', 0)} failed checks): "
            f"{check.get('error', 'no answer')}"
        )
    failure = update.get("last_failure")
    latest = update.get("last_outcome") or {}
    fixed = latest.get("outcome") == "committed" and failure and latest["at"] > failure["at"]
    if failure and not fixed:
        problems.append(f"last update failed {_when(failure['at'], now)}: {failure['message']}")
    adoption = data.get("adoption") or ""
    if adoption.startswith("restarted"):
        problems.append(
            "the node was restarted when this keeper started: it could not take over the "
            f"running one ({adoption.removeprefix('restarted: ')})"
        )
    identity = update.get("identity_error") or reports.get("identity_error")
    if identity:
        problems.append(f"node identity: {identity}")
    queued = reports.get("queued") or 0
    if queued and (reports.get("failures_in_row") or reports.get("last_error")):
        error = reports.get("last_error") or "not sent yet"
        problems.append(f"{queued} report(s) waiting to be sent: {error}")
    if data.get("signed_releases") is False:
        problems.append(UNSIGNED_WARNING)
    if update.get("decision", {}) and update["decision"].get("code") == "no-artifact":
        problems.append(update["decision"]["reason"])
    blocked = firewall_problem(data.get("firewall"))
    if blocked:
        problems.append(blocked)
    unreachable = reachability_problem(data.get("reachability"))
    if unreachable:
        problems.append(unreachable)
    problems.extend(f"limits: {note}" for note in data.get("limit_notes") or [])
    logs = data.get("logs") or {}
    used, cap = logs.get("bytes"), logs.get("cap_bytes")
    if used is not None and cap and used >= 0.9 * cap:
        problems.append(
            f"log directory at {_bytes(used)} of its {_bytes(cap)} cap: the oldest logs "
            "are being deleted"
        )
    return problems


# -- rows ----------------------------------------------------------------------------------


def status_rows(data: dict[str, Any], now: float | None = None) -> list[tuple[str, str]]:
    """The human view of the status JSON, one (label, text) per row."""
    now = time.time() if now is None else now
    mem, cpu = data["memory"], data["cpu"]
    state = data["state"] + (" (crash loop flagged)" if data["crash_loop"] else "")
    rows = [
        ("state", state),
        ("pid", str(data["pid"] or "-")),
        ("version", data["version"] or "-"),
        ("uptime", _duration(data["uptime_seconds"])),
    ]
    if data.get("healthy_since") is not None:
        rows.append(("healthy since", _when(data["healthy_since"], now)))
    restarts = f"{data['restarts']} ({data['recent_failures']} failures in the window"
    if data.get("consecutive_failures"):
        restarts += f", {data['consecutive_failures']} in a row"
    rows.append(("restarts", restarts + ")"))
    if data.get("adoption") == "adopted":
        rows.append(("taken over", "from the previous keeper, without a restart"))
    if data["next_start_in"] is not None:
        rows.append(("next start in", _duration(data["next_start_in"])))
    last = data["last_exit"]
    if last:
        when = _when(last["at"], now)
        rows.append(("last exit", f"{last['reason']}: {last['detail']} at {when}"))
    pulse = data["last_pulse"]
    if pulse:
        ok = "ok" if pulse["ok"] else f"failed: {pulse['detail']}"
        rows.append(
            ("last pulse", f"{ok} ({pulse['seconds'] * 1000:.0f} ms, {data['probe']['kind']})")
        )
    hard = _bytes(mem["hard_limit"])
    if mem["hard_limit"] is not None:
        hard += f" via {mem['hard_mechanism']}"
    rows.append(
        ("memory", f"{_bytes(mem['bytes'])} ({mem['kind'] or '-'}); soft limit "
         f"{_bytes(mem['soft_limit'])}, hard limit {hard}")
    )  # fmt: skip
    pct = "-" if cpu["percent"] is None else f"{cpu['percent']:.1f} %"
    cap = "no cap"
    if cpu["rate_limit_percent"] is not None:
        cap = f"cap {cpu['rate_limit_percent']:g} % via {cpu['rate_mechanism']}"
    cores = "all cores" if cpu["cores"] is None else "cores " + ",".join(map(str, cpu["cores"]))
    rows.append(("cpu", f"{pct}; {cap}; {cores}; priority {cpu['priority']}"))
    if data.get("tree_tracking"):
        rows.append(("process tree", TRACKING.get(data["tree_tracking"], data["tree_tracking"])))
    logs = data.get("logs")
    if logs and logs.get("bytes") is not None:
        rows.append(("logs", f"{_bytes(logs['bytes'])} of {_bytes(logs['cap_bytes'])} cap"))
    firewall = firewall_row(data.get("firewall"))
    if firewall:
        rows.append(("firewall", firewall))
    outside = reachability_row(data.get("reachability"), now)
    if outside:
        rows.append(("from outside", outside))
    rows.extend(update_rows(data.get("update"), now))
    rows.extend(maintenance_rows(data.get("maintenance")))
    reports = data.get("reports")
    if reports and reports.get("queued"):
        rows.append(("reports", f"{reports['queued']} waiting to be sent"))
    return rows


TRACKING = {
    "cgroup": "tracked by its own cgroup",
    "job-object": "tracked by a Job Object",
    "process-group": "process group only (fallback: a child that leaves it escapes)",
}


def firewall_row(firewall: dict[str, Any] | None) -> str | None:
    """The firewall check's row (None from a keeper that has no check)."""
    if not firewall:
        return None
    if not firewall.get("enabled"):
        return "not checked ([firewall] enabled = false)"
    last = firewall.get("last")
    if not last:
        return "checking now" if firewall.get("checking") else "not checked yet"
    text = last["summary"]
    unknown = [p for p in last["protocols"].values() if p["status"] == "unknown"]
    if unknown and len({p["reason"] for p in unknown}) == 1:
        text += f": {unknown[0]['reason']}"
    elif unknown:
        text += "; " + "; ".join(f"{p['protocol'].upper()}: {p['reason']}" for p in unknown)
    return text


def firewall_problem(firewall: dict[str, Any] | None) -> str | None:
    """The problem line of a blocked port: what, why, and the fix."""
    last = (firewall or {}).get("last")
    if not last or last["status"] != "blocked":
        return None
    blocked = [p for p in last["protocols"].values() if p["status"] == "blocked"]
    which = " and ".join(p["protocol"].upper() for p in blocked)
    text = f"the firewall blocks inbound {which} to the node's port {last['port']}: "
    text += blocked[0]["reason"]
    if all(p.get("allow_fixes") for p in blocked):
        return text + f"; fix: `nodekeeper firewall allow` ({last['fix_note']})"
    return text + f"; fix ({last['fix_note']}): " + " && ".join(last["fix"])


_UDP_WORDS = {"reachable": "reachable", "no_answer": "no answer", "unreachable": "unreachable"}


def reachability_row(reach: dict[str, Any] | None, now: float) -> str | None:
    """The dial-back's one line (decision 082): "TCP reachable, UDP no answer (checked
    14:02)", with why the last try failed when it did; None from a keeper that does not
    ask (no [update], or [reachability] enabled = false)."""
    if reach is None:
        return None
    last = reach.get("last")
    if last:
        text = (
            f"TCP {last['tcp']}, UDP {_UDP_WORDS.get(last['udp'], last['udp'])} "
            f"(checked {_minute(last['checked_at'], now)})"
        )
    elif reach.get("checking"):
        text = "checking now"
    else:
        text = "not checked yet"
    error = reach.get("last_error")
    if error:
        text += f"; last try: {error}"
    return text


def reachability_problem(reach: dict[str, Any] | None) -> str | None:
    """The problem line when the dial-back found the node unreachable from outside."""
    last = (reach or {}).get("last")
    if not last or (last["tcp"] != "unreachable" and last["udp"] != "unreachable"):
        return None
    return f"the node is unreachable from outside ({last['address']}): {last['detail']}"


def update_rows(update: dict[str, Any] | None, now: float | None = None) -> list[tuple[str, str]]:
    """The updater's part of the status table (none when updates are not managed)."""
    if not update:
        return []
    now = time.time() if now is None else now
    rows = []
    if update["held"]:
        held = update["held"]
        rows.append(("UPDATE HELD", f"on {held['version']}: {held['message']}"))
    current = update["current"] or "nothing installed"
    if update["previous"]:
        current += f" (previous {update['previous']})"
    rows.append(("installed", current))
    if update["step"]:
        rows.append(("updating", f"to {update['target']}: {update['step']}"))
    if update["failed"]:
        rows.append(("failed versions", ", ".join(update["failed"])))
    outcome = update["last_outcome"]
    if outcome:
        rows.append(("last update", f"{outcome['outcome']}: {outcome['message']}"))
    decision = update.get("decision")
    if decision:
        rows.append(("decision", decision["reason"]))
        why = rollout_sentence(decision)
        if why:
            rows.append(("rollout", why))
    if update.get("checking"):
        rows.append(("next check", "checking now"))
    elif update.get("next_check_in") is not None:
        when = f"in {_duration(update['next_check_in'])}"
        if update.get("next_check_at") is not None:
            when += f" (at {_clock(update['next_check_at'], now)})"
        rows.append(("next check", when))
    return rows


def maintenance_rows(maintenance: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The operator's quiet window and pause (decision 069), when one is set."""
    if not maintenance or not (maintenance.get("quiet_window") or maintenance.get("paused_until")):
        return []
    rows = []
    if maintenance.get("quiet_window"):
        rows.append(("quiet window", f"{maintenance['quiet_window']} (local time)"))
    why = (maintenance.get("verdict") or {}).get("why")
    if why:
        rows.append(("updates now", why))
    return rows


def rollout_sentence(decision: dict[str, Any]) -> str | None:
    """Where this node stands in the rollout of the suggested version, when it matters
    (the node is not on the suggested version and a rollout exists)."""
    rollout = decision.get("rollout")
    if not rollout or decision.get("code") in ("up-to-date", "ahead"):
        return None
    text = f"rollout of {decision.get('suggested')} at {_pct(rollout['percent'])}"
    if rollout.get("position") is None:
        return text + "; this node's position is unknown until it has an identity"
    text += f", this node's position {_pct(rollout['position'])}"
    if rollout["position"] <= rollout["percent"]:
        return text + ": this node is included"
    eta = rollout.get("eta_seconds")
    if eta is not None:
        return text + f": expected in about {_about(eta)} at the current rate"
    if rollout.get("rate_per_day") is None:
        return text + ": the control plane does not announce a ramp rate (paused or set by hand)"
    return text + ": the rollout is not ramping"


# -- formatting ----------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{value:.1f} %" if value < 99.95 or value == 100 else f"{value:.2f} %"


def _about(seconds: float) -> str:
    hours = seconds / 3600
    if hours < 1:
        return f"{max(1, round(seconds / 60))} minutes"
    if hours < 48:
        return f"{round(hours)} hours" if round(hours) != 1 else "1 hour"
    return f"{round(hours / 24)} days"


def _when(at: float, now: float) -> str:
    """A wall-clock time and how long ago it was."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    ago = max(0.0, now - at)
    return f"{stamp} ({_duration(ago)} ago)"


def _clock(at: float, now: float) -> str:
    fmt = "%H:%M:%S" if abs(at - now) < 86400 else "%Y-%m-%d %H:%M:%S"
    return time.strftime(fmt, time.localtime(at))


def _minute(at: float, now: float) -> str:
    """A wall-clock time to the minute, with the date when it is not today's."""
    same_day = time.localtime(at)[:3] == time.localtime(now)[:3]
    return time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", time.localtime(at))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {text}" if days else text


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
