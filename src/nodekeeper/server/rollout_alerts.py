"""The operator's alert when a rollout pauses itself (decision 078).

The channels are the keeper's (decision 068: webhook, ntfy-style push, e-mail), set up
from the ``[alerts]`` table of a TOML file given to `server run --alerts-config FILE`,
validated by the same ``AlertsConfig`` model as keeper.toml's. ``secrets_file`` is
relative to that file.

No debouncing: the database already makes each auto-pause fire once across replicas
(``Store.auto_pause``), and two processes paused within the debounce interval must both
be told.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from nodekeeper.alerts.alert import Alert
from nodekeeper.alerts.config import AlertsConfig

from .health_check import Event

KIND = "rollout_paused"


class AlertsConfigError(Exception):
    """The alerts file cannot be used; the message names the file and what is wrong."""


def load_alerts_config(path: Path) -> tuple[AlertsConfig, Path | None]:
    """The ``[alerts]`` table of ``path`` and its secrets file's path (absolute)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AlertsConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AlertsConfigError(f"{path} is not valid TOML: {exc}") from None
    extra = sorted(set(raw) - {"alerts"})
    if extra:
        raise AlertsConfigError(
            f"{path}: unknown top-level key(s) {', '.join(extra)}; the file holds one "
            "[alerts] table (with [alerts.webhook], [alerts.push] or [alerts.email])"
        )
    table = raw.get("alerts")
    if not isinstance(table, dict):
        raise AlertsConfigError(
            f"{path} has no [alerts] table; add one with at least one channel, e.g.\n"
            '[alerts.webhook]\nurl = "https://hooks.example.net/nodekeeper"'
        )
    try:
        config = AlertsConfig.model_validate(table)
    except ValidationError as exc:
        problems = "; ".join(
            f"alerts.{'.'.join(str(p) for p in err['loc'])}: "
            f"{str(err['msg']).removeprefix('Value error, ')}"
            if err["loc"]
            else str(err["msg"]).removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise AlertsConfigError(f"{path}: {problems}") from None
    if not config.enabled:
        raise AlertsConfigError(
            f"{path}: [alerts] names no channel; add [alerts.webhook], [alerts.push] or "
            "[alerts.email] (or leave --alerts-config out)"
        )
    secrets = None
    if config.secrets_file:
        secrets = Path(config.secrets_file).expanduser()
        if not secrets.is_absolute():
            secrets = path.parent / secrets
    return config, secrets


def pause_alert(event: Event, now: float) -> Alert:
    numbers = event.detail.get("numbers") or {}
    return Alert(
        kind=KIND,
        severity="error",
        title=f"Rollout of {event.process} {event.version} paused itself",
        message=(
            f"The control plane paused the rollout of {event.process} {event.version}: "
            f"{event.why}. {numbers.get('failed', '?')} of {numbers.get('updated', '?')} "
            "nodes that updated failed; the cursor is frozen."
        ),
        fix=(
            f"See `nodekeeper rollout status` and the deciding reports; then `nodekeeper "
            f"rollout resume {event.process}` to go on, or `nodekeeper rollout abort "
            f"{event.process}` to stop offering {event.version}."
        ),
        time=now,
    )
