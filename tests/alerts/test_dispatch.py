"""The dispatcher end to end: debounce, every channel, deadlines, state across restarts.
Real receivers on loopback; a stepped clock instead of sleeps."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from nodekeeper.alerts import (
    Alert,
    AlertDispatcher,
    AlertsConfig,
    EmailChannel,
    PushChannel,
    SendResult,
    WebhookChannel,
    build_dispatcher,
)
from nodekeeper.alerts.debounce import DebouncePolicy
from tests.alerts.receivers import http_receiver, silent_server, smtp_receiver

TEN_MINUTES = DebouncePolicy(600)


class Clock:
    def __init__(self, now: float = 1_780_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def crash(n: int = 0, node_id: str | None = None) -> Alert:
    return Alert("crash_loop", "error", "The node keeps crashing", f"crash {n}", node_id=node_id)


DISK = Alert("disk_full", "critical", "The disk is full", "0 bytes free on /srv")


def test_a_crash_loop_of_100_gives_one_alert_and_another_kind_still_goes_out() -> None:
    clock = Clock()
    with http_receiver() as receiver:
        dispatcher = AlertDispatcher([WebhookChannel(receiver.url)], TEN_MINUTES, clock=clock)
        outcomes = []
        for n in range(100):
            outcomes.append(dispatcher.send_blocking(crash(n)))
            clock.now += 1  # 100 crashes over 100 s, inside the 10 minutes
        disk = dispatcher.send_blocking(DISK)
    assert outcomes[0].delivered and not outcomes[0].suppressed
    assert all(o.suppressed and o.results == () for o in outcomes[1:])
    assert disk.delivered
    # send_blocking returns after every channel has answered: what arrived is final.
    kinds = [json.loads(r.body)["kind"] for r in receiver.requests]
    assert kinds == ["crash_loop", "disk_full"]
    assert json.loads(receiver.requests[0].body)["message"] == "crash 0"


def test_after_the_interval_the_same_problem_is_said_again() -> None:
    clock = Clock()
    with http_receiver() as receiver:
        dispatcher = AlertDispatcher([WebhookChannel(receiver.url)], TEN_MINUTES, clock=clock)
        assert dispatcher.send_blocking(crash(1)).delivered
        clock.now += 599
        assert dispatcher.send_blocking(crash(2)).suppressed
        clock.now += 1
        assert dispatcher.send_blocking(crash(3)).delivered
    assert [json.loads(r.body)["message"] for r in receiver.requests] == ["crash 1", "crash 3"]


def test_resolved_then_again_is_delivered_again() -> None:
    clock = Clock()
    with http_receiver() as receiver:
        dispatcher = AlertDispatcher([WebhookChannel(receiver.url)], TEN_MINUTES, clock=clock)
        assert dispatcher.send_blocking(crash(1)).delivered
        clock.now += 5
        assert dispatcher.send_blocking(crash(2)).suppressed
        dispatcher.resolved("crash_loop")
        clock.now += 5
        assert dispatcher.send_blocking(crash(3)).delivered
    assert [json.loads(r.body)["message"] for r in receiver.requests] == ["crash 1", "crash 3"]


def test_nodes_are_debounced_apart() -> None:
    with http_receiver() as receiver:
        dispatcher = AlertDispatcher([WebhookChannel(receiver.url)], TEN_MINUTES, clock=Clock())
        assert dispatcher.send_blocking(crash(1, node_id="a")).delivered
        assert dispatcher.send_blocking(crash(2, node_id="b")).delivered
        assert dispatcher.send_blocking(crash(3, node_id="a")).suppressed
        dispatcher.resolved("crash_loop", node_id="a")
        assert dispatcher.send_blocking(crash(4, node_id="a")).delivered
        assert dispatcher.send_blocking(crash(5, node_id="b")).suppressed
    assert len(receiver.requests) == 3


def test_a_restarted_dispatcher_does_not_send_again(tmp_path: Path) -> None:
    state = tmp_path / "state" / "alerts.json"
    state.parent.mkdir()
    clock = Clock()
    with http_receiver() as receiver:
        first = AlertDispatcher(
            [WebhookChannel(receiver.url)], TEN_MINUTES, state_path=state, clock=clock
        )
        assert first.send_blocking(crash(1)).delivered
        clock.now += 60
        # The keeper restarts: a new dispatcher from the same file.
        problems: list[str] = []
        second = AlertDispatcher(
            [WebhookChannel(receiver.url)],
            TEN_MINUTES,
            state_path=state,
            clock=clock,
            on_problem=problems.append,
        )
        assert second.send_blocking(crash(2)).suppressed
        assert second.send_blocking(DISK).delivered
        second.resolved("crash_loop")
        third = AlertDispatcher(
            [WebhookChannel(receiver.url)], TEN_MINUTES, state_path=state, clock=clock
        )
        assert third.send_blocking(crash(3)).delivered
        assert third.send_blocking(DISK).suppressed
    assert problems == []
    assert [json.loads(r.body)["message"] for r in receiver.requests] == [
        "crash 1",
        "0 bytes free on /srv",
        "crash 3",
    ]


def test_a_damaged_state_file_is_reported_and_alerts_go_on(tmp_path: Path) -> None:
    state = tmp_path / "alerts.json"
    state.write_text("{not json")
    problems: list[str] = []
    with http_receiver() as receiver:
        dispatcher = AlertDispatcher(
            [WebhookChannel(receiver.url)],
            TEN_MINUTES,
            state_path=state,
            on_problem=problems.append,
        )
        assert dispatcher.send_blocking(crash()).delivered
    assert len(problems) == 1 and "not JSON" in problems[0]
    assert "crash_loop" in json.loads(state.read_text())["last_sent"]


def test_a_state_file_that_cannot_be_written_is_reported_and_the_alert_still_goes(
    tmp_path: Path,
) -> None:
    problems: list[str] = []
    with http_receiver() as receiver:
        dispatcher = AlertDispatcher(
            [WebhookChannel(receiver.url)],
            TEN_MINUTES,
            state_path=tmp_path / "missing-dir" / "alerts.json",
            on_problem=problems.append,
        )
        assert dispatcher.send_blocking(crash()).delivered
    assert len(problems) == 1 and "not saved" in problems[0]


def test_every_channel_gets_it_and_a_hung_one_fails_at_the_deadline() -> None:
    with http_receiver() as receiver, smtp_receiver() as smtp, silent_server() as port:
        dispatcher = AlertDispatcher(
            [
                WebhookChannel(f"{receiver.url}/hook"),
                PushChannel(f"{receiver.url}/topic"),
                EmailChannel(
                    "127.0.0.1",
                    "node@example.com",
                    ["op@example.com"],
                    port=smtp.port,
                    security="none",
                ),
                # Its own timeout is far beyond the deadline: the deadline must end it.
                WebhookChannel(f"http://127.0.0.1:{port}/", timeout_seconds=120, name="hung"),
            ],
            TEN_MINUTES,
            # Long enough for a real SMTP exchange on a loaded machine (0.5 s was not, in
            # a full-suite run), far below the hung channel's own 120 s.
            deadline_seconds=5,
        )
        started = time.monotonic()
        dispatch = dispatcher.send_blocking(crash())
        took = time.monotonic() - started
    by_name = {r.channel: r for r in dispatch.results}
    assert by_name["webhook"].ok and by_name["push"].ok and by_name["email"].ok, by_name
    assert not by_name["hung"].ok
    assert by_name["hung"].detail == "no result within the 5 s deadline"
    assert took < 30  # loosely: returned at the deadline, not at the hung channel's 120 s
    assert sorted(r.path for r in receiver.requests) == ["/hook", "/topic"]
    assert len(smtp.mails) == 1


def test_a_channel_that_raises_is_a_failed_result() -> None:
    class Broken:
        name = "broken"

        def send(self, alert: Alert) -> SendResult:
            raise RuntimeError("a bug")

    dispatch = AlertDispatcher([Broken()], TEN_MINUTES).send_blocking(crash())
    assert dispatch.results == (SendResult("broken", False, "RuntimeError: a bug"),)
    assert not dispatch.delivered


def test_the_async_send_leaves_the_event_loop_free_while_a_channel_hangs() -> None:
    async def scenario(port: int) -> tuple[int, bool]:
        dispatcher = AlertDispatcher(
            [WebhookChannel(f"http://127.0.0.1:{port}/", timeout_seconds=120)],
            TEN_MINUTES,
            deadline_seconds=0.5,
        )
        ticks = 0
        task = asyncio.create_task(dispatcher.send(crash()))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0.01)
        dispatch = await task
        return ticks, dispatch.delivered

    with silent_server() as port:
        ticks, delivered = asyncio.run(asyncio.wait_for(scenario(port), 60))
    assert ticks > 1  # the loop ran while the send waited
    assert not delivered


def test_build_dispatcher_from_the_config_and_the_secrets_file(tmp_path: Path) -> None:
    secrets = tmp_path / "alerts-secrets.toml"
    secrets.write_text('webhook_token = "wt"\nsmtp_password = "pw"\n')
    secrets.chmod(0o600)
    with http_receiver() as receiver, smtp_receiver(password="pw") as smtp:
        config = AlertsConfig.model_validate(
            {
                "debounce_minutes": 30,
                "webhook": {"url": f"{receiver.url}/hook"},
                "push": {"url": f"{receiver.url}/topic"},
                "email": {
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "security": "none",
                    "username": "node",
                    "sender": "node@example.com",
                    "recipients": ["op@example.com"],
                },
            }
        )
        dispatcher = build_dispatcher(config, state_path=None, secrets_path=secrets)
        assert dispatcher.policy == DebouncePolicy(1800)
        dispatch = dispatcher.send_blocking(crash())
    assert all(r.ok for r in dispatch.results), dispatch.results
    hook = next(r for r in receiver.requests if r.path == "/hook")
    assert hook.headers["authorization"] == "Bearer wt"
    assert smtp.logins == [("node", "pw")] and len(smtp.mails) == 1
