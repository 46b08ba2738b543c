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

from .alert import KINDS, SEVERITIES, Alert
from .channels import Channel, EmailChannel, PushChannel, SendResult, WebhookChannel
from .config import AlertsConfig
from .debounce import DebouncePolicy, DebounceState
from .dispatch import AlertDispatcher, Dispatch, build_dispatcher
from .secrets import SecretsError, read_secrets

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
