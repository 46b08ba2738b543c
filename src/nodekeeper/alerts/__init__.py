"""Alerts the service sends itself when no tray app is running to show a problem.

Webhook (JSON POST), ntfy-style push and e-mail over SMTP, debounced per kind so that a
crash loop gives one notification, not hundreds (decision 068). Shared by the keeper and
the control plane, so it sits low in the layers: it imports only ``nodekeeper.durable``.

- ``alert``: what one alert is, and its JSON form.
- ``debounce``: pure: whether a kind may be sent now; its state as a small JSON file.
- ``secrets``: the SMTP password and tokens, from a file only the service can read.
- ``channels``: one class per channel; a send never raises, it returns a ``SendResult``.
- ``config``: the ``[alerts]`` table of keeper.toml.
- ``dispatch``: ``AlertDispatcher``: debounce, then every channel, with a deadline.
"""

from __future__ import annotations

import importlib
from typing import Any

# Where each name lives. Imported on first use (PEP 562): the keeper's config imports
# ``alerts.config`` at every start, and a keeper that sends no alert must not pay for the
# channels' HTTP and SMTP clients (the idle keeper's memory target counts imports).
_HOME = {
    "KINDS": "alert", "SEVERITIES": "alert", "Alert": "alert",
    "Channel": "channels", "EmailChannel": "channels", "PushChannel": "channels",
    "SendResult": "channels", "WebhookChannel": "channels",
    "AlertsConfig": "config",
    "DebouncePolicy": "debounce", "DebounceState": "debounce",
    "AlertDispatcher": "dispatch", "Dispatch": "dispatch", "build_dispatcher": "dispatch",
    "SecretsError": "secrets", "read_secrets": "secrets",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "KINDS",
    "SEVERITIES",
    "Alert",
    "AlertDispatcher",
    "AlertsConfig",
    "Channel",
    "DebouncePolicy",
    "DebounceState",
    "Dispatch",
    "EmailChannel",
    "PushChannel",
    "SecretsError",
    "SendResult",
    "WebhookChannel",
    "build_dispatcher",
    "read_secrets",
]
