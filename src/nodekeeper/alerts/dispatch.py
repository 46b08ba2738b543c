"""``AlertDispatcher``: debounce an alert, then send it on every channel, with a deadline.

Each channel runs in its own daemon thread, so a mail server that never answers delays
nothing but its own result: after ``deadline_seconds`` the dispatcher returns and that
channel counts as failed (its thread ends at its own timeout, in the background). The
async ``send`` runs the whole thing in a worker thread, so the caller's event loop is
never blocked, and it is over within the deadline.

A send is recorded in the debounce state before the channels run, whatever they return:
with a dead webhook, a crash loop would otherwise try (and time out) on every crash. The
cost is that a failed alert is next tried after the debounce interval (decision 068).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import debounce
from .alert import Alert
from .channels import Channel, EmailChannel, PushChannel, SendResult, WebhookChannel
from .config import AlertsConfig
from .secrets import SecretsError, read_secrets


@dataclass(frozen=True)
class Dispatch:
    """What became of one alert: suppressed by debouncing, or one result per channel."""

    alert: Alert
    suppressed: bool
    results: tuple[SendResult, ...] = ()

    @property
    def delivered(self) -> bool:
        return any(r.ok for r in self.results)


class AlertDispatcher:
    def __init__(
        self,
        channels: Sequence[Channel],
        policy: debounce.DebouncePolicy,
        *,
        state_path: Path | None = None,
        deadline_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        """``state_path``: the debounce state's file (None: in memory only).
        ``on_problem``: told in words when the state file cannot be read or written
        (the keeper logs it); alerts go on either way."""
        self.channels = tuple(channels)
        self.policy = policy
        self.state_path = state_path
        self.deadline_seconds = deadline_seconds
        self._clock = clock
        self._on_problem = on_problem or (lambda _message: None)
        self._lock = threading.Lock()
        self._state = debounce.DebounceState()
        if state_path is not None:
            self._state, problem = debounce.load_state(state_path)
            if problem:
                self._on_problem(f"alert debounce state not used: {problem}")

    @property
    def state(self) -> debounce.DebounceState:
        return self._state

    async def send(self, alert: Alert) -> Dispatch:
        """``send_blocking`` in a worker thread: the event loop waits, never blocks."""
        return await asyncio.to_thread(self.send_blocking, alert)

    def send_blocking(self, alert: Alert) -> Dispatch:
        """Debounce, then every channel at once; returns within ``deadline_seconds``
        (plus the state file's write) and never raises for a channel's failure."""
        with self._lock:
            now = self._clock()
            if not debounce.should_send(self._state, alert.key, now, self.policy):
                return Dispatch(alert, suppressed=True)
            self._update(debounce.mark_sent(self._state, alert.key, now))
        return Dispatch(alert, suppressed=False, results=self._fan_out(alert))

    def resolved(self, kind: str, node_id: str | None = None) -> None:
        """The problem of ``kind`` cleared: its next alert is sent at once."""
        key = kind if node_id is None else f"{node_id}/{kind}"
        with self._lock:
            if key in self._state.last_sent:
                self._update(debounce.resolve(self._state, key))

    def _update(self, state: debounce.DebounceState) -> None:
        self._state = state
        if self.state_path is None:
            return
        try:
            debounce.save_state(self.state_path, state)
        except OSError as exc:
            self._on_problem(
                f"alert debounce state not saved: {self.state_path}: {exc.strerror or exc}"
            )

    def _fan_out(self, alert: Alert) -> tuple[SendResult, ...]:
        results: list[SendResult | None] = [None] * len(self.channels)

        def run(index: int, channel: Channel) -> None:
            try:
                results[index] = channel.send(alert)
            except Exception as exc:  # a channel's bug must not reach the caller either
                results[index] = SendResult.failed(channel.name, f"{type(exc).__name__}: {exc}")

        threads = [
            threading.Thread(target=run, args=(i, ch), name=f"alert-{ch.name}", daemon=True)
            for i, ch in enumerate(self.channels)
        ]
        end = time.monotonic() + self.deadline_seconds
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
        return tuple(
            result
            if result is not None
            else SendResult.failed(
                channel.name, f"no result within the {self.deadline_seconds:g} s deadline"
            )
            for result, channel in zip(results, self.channels, strict=True)
        )


def channels_from_config(
    config: AlertsConfig, secrets: dict[str, str] | None = None
) -> list[Channel]:
    secrets = secrets or {}
    timeout = config.timeout_seconds
    channels: list[Channel] = []
    if config.webhook:
        channels.append(WebhookChannel(config.webhook.url, secrets.get("webhook_token"), timeout))
    if config.push:
        channels.append(PushChannel(config.push.url, secrets.get("push_token"), timeout))
    if config.email:
        email = config.email
        password = secrets.get("smtp_password")
        if email.username and not password:
            raise SecretsError(
                "[alerts.email] username is set but the secrets file has no smtp_password"
            )
        channels.append(
            EmailChannel(
                host=email.host,
                sender=email.sender,
                recipients=tuple(email.recipients),
                port=email.port,
                security=email.security,
                username=email.username,
                password=password,
                timeout_seconds=timeout,
            )
        )
    return channels


def build_dispatcher(
    config: AlertsConfig,
    *,
    state_path: Path | None,
    secrets_path: Path | None = None,
    clock: Callable[[], float] = time.time,
    on_problem: Callable[[str], None] | None = None,
) -> AlertDispatcher:
    """The dispatcher for ``[alerts]``; ``secrets_path`` is ``secrets_file`` resolved by
    the caller (placeholders, relative to the config file). Raises ``SecretsError``."""
    secrets = read_secrets(secrets_path) if secrets_path is not None else {}
    return AlertDispatcher(
        channels_from_config(config, secrets),
        debounce.DebouncePolicy(config.debounce_minutes * 60),
        state_path=state_path,
        deadline_seconds=config.deadline_seconds,
        clock=clock,
        on_problem=on_problem,
    )
