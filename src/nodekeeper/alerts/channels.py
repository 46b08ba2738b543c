"""The channels an alert goes out on: webhook, ntfy-style push, e-mail over SMTP.

Each channel's ``send(alert)`` has a timeout on every network step and never raises:
it returns a ``SendResult`` (ok, or failed with why), because the caller is a keeper
loop that must go on whatever a mail server does. The dispatcher adds a whole-send
deadline on top (a server that trickles bytes passes every per-read timeout).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal, Protocol

import httpx

from .alert import Alert

USER_AGENT = "nodekeeper-alerts"

# ntfy's priorities 1-5 (min, low, default, high, urgent).
PUSH_PRIORITY = {"info": "2", "warning": "3", "error": "4", "critical": "5"}


@dataclass(frozen=True)
class SendResult:
    channel: str
    ok: bool
    detail: str = ""

    @classmethod
    def failed(cls, channel: str, why: str) -> SendResult:
        return cls(channel, False, why)


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    def send(self, alert: Alert) -> SendResult: ...


def _http_failure(name: str, exc: Exception) -> SendResult:
    if isinstance(exc, httpx.TimeoutException):
        return SendResult.failed(name, f"no answer in time ({type(exc).__name__})")
    if isinstance(exc, httpx.HTTPStatusError):
        return SendResult.failed(name, f"HTTP {exc.response.status_code}")
    return SendResult.failed(name, f"{type(exc).__name__}: {exc}")


def _post(name: str, url: str, timeout: float, **kwargs: object) -> SendResult:
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=True) as client:
            response = client.post(url, **kwargs)  # type: ignore[arg-type]
            response.raise_for_status()
    except Exception as exc:  # never into the caller: a result says why
        return _http_failure(name, exc)
    return SendResult(name, True, f"HTTP {response.status_code}")


@dataclass(frozen=True)
class WebhookChannel:
    """POST of the alert's JSON (``Alert.to_json``) to ``url``; a bearer token if set."""

    url: str
    token: str | None = None
    timeout_seconds: float = 10.0
    name: str = "webhook"

    def send(self, alert: Alert) -> SendResult:
        headers = {"User-Agent": USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return _post(
            self.name, self.url, self.timeout_seconds, json=alert.to_json(), headers=headers
        )


def _header_text(text: str) -> str:
    """HTTP headers are ASCII; ntfy decodes RFC 2047 encoded words for the rest."""
    one_line = " ".join(text.split())
    if one_line.isascii():
        return one_line
    return Header(one_line, "utf-8").encode(maxlinelen=10_000)


@dataclass(frozen=True)
class PushChannel:
    """ntfy-style push: POST of the text to ``url`` (a server and a topic, e.g.
    ``https://ntfy.sh/my-node-alerts``) with Title, Priority and Tags headers."""

    url: str
    token: str | None = None
    timeout_seconds: float = 10.0
    name: str = "push"

    def send(self, alert: Alert) -> SendResult:
        headers = {
            "User-Agent": USER_AGENT,
            "Title": _header_text(alert.title),
            "Priority": PUSH_PRIORITY[alert.severity],
            "Tags": f"{alert.severity},{alert.kind}",
            "Content-Type": "text/plain; charset=utf-8",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return _post(
            self.name,
            self.url,
            self.timeout_seconds,
            content=alert.text().encode(),
            headers=headers,
        )


Security = Literal["starttls", "tls", "none"]


@dataclass(frozen=True)
class EmailChannel:
    """One e-mail per alert over SMTP: STARTTLS (port 587), implicit TLS (465) or plain
    (a relay on the LAN); login only when a username is set."""

    host: str
    sender: str
    recipients: Sequence[str]
    port: int = 587
    security: Security = "starttls"
    username: str | None = None
    password: str | None = None
    timeout_seconds: float = 10.0
    ssl_context: ssl.SSLContext | None = None
    name: str = "email"

    def message(self, alert: Alert) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = f"[nodekeeper] {alert.title}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = formatdate(alert.time, localtime=False)
        msg["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        msg["X-Nodekeeper-Kind"] = alert.kind
        msg["X-Nodekeeper-Severity"] = alert.severity
        msg.set_content(alert.text())
        return msg

    def send(self, alert: Alert) -> SendResult:
        try:
            context = self.ssl_context or ssl.create_default_context()
            smtp: smtplib.SMTP
            if self.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout_seconds, context=context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds)
            with smtp:
                if self.security == "starttls":
                    smtp.starttls(context=context)
                if self.username:
                    smtp.login(self.username, self.password or "")
                refused = smtp.send_message(
                    self.message(alert), from_addr=self.sender, to_addrs=list(self.recipients)
                )
        except TimeoutError as exc:
            return SendResult.failed(self.name, f"no answer in time: {exc}")
        except smtplib.SMTPServerDisconnected as exc:
            # smtplib turns a read timeout into "Connection unexpectedly closed: timed out".
            if "timed out" in str(exc):
                return SendResult.failed(self.name, f"no answer in time: {exc}")
            return SendResult.failed(self.name, f"{type(exc).__name__}: {exc}")
        except smtplib.SMTPAuthenticationError as exc:
            return SendResult.failed(self.name, f"login refused: {exc.smtp_code}")
        except smtplib.SMTPException as exc:
            return SendResult.failed(self.name, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # OSError, ssl.SSLError, ...: never into the caller
            return SendResult.failed(self.name, f"{type(exc).__name__}: {exc}")
        if refused:
            return SendResult(self.name, True, f"refused by the server: {', '.join(refused)}")
        return SendResult(self.name, True, f"sent to {len(self.recipients)} recipient(s)")
