"""The ``[alerts]`` table of keeper.toml: which channels, how often, where the secrets are.

The channels are the sub-tables that are present (``[alerts.webhook]``, ``[alerts.push]``,
``[alerts.email]``): one of each is what a home operator needs, and a table per channel
keeps every key documented in the generated reference. No secret is a key here; they
are in ``secrets_file`` (``nodekeeper.alerts.secrets``).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nodekeeper import node_settings


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str) -> str:
    # urllib, not httpx: the keeper's config loads this at every start (see __init__).
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


class WebhookConfig(_Table):
    """``[alerts.webhook]``: a JSON POST of each alert. The bearer token, if the receiver
    wants one, is ``webhook_token`` in the secrets file."""

    url: str = Field(description="Where the alert's JSON is POSTed (http or https).")

    _url = field_validator("url")(_http_url)


class PushConfig(_Table):
    """``[alerts.push]``: an ntfy-style push: the text POSTed with Title, Priority and Tags
    headers. A token, if the server wants one, is ``push_token`` in the secrets file."""

    url: str = Field(
        description="The server and topic, e.g. https://ntfy.sh/my-node-alerts (any ntfy "
        "server, or one that takes the same POST)."
    )

    _url = field_validator("url")(_http_url)


class EmailConfig(_Table):
    """``[alerts.email]``: one e-mail per alert over SMTP. The password, when ``username``
    is set, is ``smtp_password`` in the secrets file."""

    host: str = Field(min_length=1, description="The SMTP server's name or address.")
    port: int = Field(default=587, ge=1, le=65535, description="The SMTP server's port.")
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description='"starttls" (port 587), "tls" (implicit TLS, port 465) or "none" (a '
        "relay on the local network only: the password would travel in clear).",
    )
    username: str | None = Field(
        default=None, description="Login name; unset: the server is used without a login."
    )
    sender: str = Field(description="The From address.")
    recipients: list[str] = Field(min_length=1, description="The To addresses.")

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        return _email(value)

    @field_validator("recipients")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        return [_email(v) for v in value]


def _email(value: str) -> str:
    try:
        return node_settings.check_email(value)
    except node_settings.InvalidSetting as exc:
        raise ValueError(str(exc)) from None


class AlertsConfig(_Table):
    """``[alerts]``: notifications the service sends itself when no tray app shows them
    (decision 068). No channel table: no alerts. What was sent when is kept in
    ``state/alerts.json`` of the data dir, so a restart does not send it again."""

    debounce_minutes: float = Field(
        default=60.0,
        gt=0,
        description="At most one alert of a kind (per node) this often, until the problem "
        "clears; a crash loop gives one notification, not hundreds.",
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long one network step of one channel may take."
    )
    deadline_seconds: float = Field(
        default=30.0,
        gt=0,
        description="The whole send to every channel is over within this long; a channel "
        "still busy then counts as failed.",
    )
    secrets_file: str | None = Field(
        default=None,
        description="TOML file with smtp_password, webhook_token, push_token (only those "
        "needed); relative to the config file, {data_dir} allowed. On Linux it must not be "
        "readable by group or others (chmod 600).",
    )
    webhook: WebhookConfig | None = Field(default=None, description="See [alerts.webhook].")
    push: PushConfig | None = Field(default=None, description="See [alerts.push].")
    email: EmailConfig | None = Field(default=None, description="See [alerts.email].")

    @model_validator(mode="after")
    def _deadline(self) -> AlertsConfig:
        if self.deadline_seconds < self.timeout_seconds:
            raise ValueError("deadline_seconds must be at least timeout_seconds")
        return self

    @property
    def enabled(self) -> bool:
        return any((self.webhook, self.push, self.email))
