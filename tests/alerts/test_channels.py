"""Each channel against a real receiver on loopback: what arrives, and how a failure
comes back as a result instead of an exception."""

from __future__ import annotations

import json
import time

from nodekeeper.alerts import Alert, EmailChannel, PushChannel, WebhookChannel
from tests.alerts.receivers import http_receiver, silent_server, smtp_receiver
from tests.support import free_port

ALERT = Alert(
    kind="crash_loop",
    severity="error",
    title="The node keeps crashing",
    message="The node exited 5 times in 10 minutes.",
    fix="Open the node's log (errors.jsonl) and look at the last lines before each exit.",
    node_id="1abc",
    time=1_780_000_000.0,
)


def test_the_webhook_posts_the_alerts_json_with_the_bearer_token() -> None:
    with http_receiver() as receiver:
        result = WebhookChannel(f"{receiver.url}/hook", token="s3cret").send(ALERT)
    assert result.ok, result
    [request] = receiver.requests
    assert request.path == "/hook"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.body)
    assert body == ALERT.to_json()
    assert body["kind"] == "crash_loop" and body["fix"].startswith("Open the node's log")
    assert Alert.from_json(body) == ALERT


def test_the_webhook_sends_no_authorization_without_a_token() -> None:
    with http_receiver() as receiver:
        assert WebhookChannel(receiver.url).send(ALERT).ok
    assert "authorization" not in receiver.requests[0].headers


def test_push_posts_the_text_with_title_priority_and_tags() -> None:
    with http_receiver() as receiver:
        result = PushChannel(f"{receiver.url}/my-node-alerts", token="tk").send(ALERT)
    assert result.ok, result
    [request] = receiver.requests
    assert request.path == "/my-node-alerts"
    assert request.headers["title"] == "The node keeps crashing"
    assert request.headers["priority"] == "4"
    assert request.headers["tags"] == "error,crash_loop"
    assert request.headers["authorization"] == "Bearer tk"
    text = request.body.decode()
    assert text.startswith("The node exited 5 times in 10 minutes.")
    assert "Fix: Open the node's log" in text and "Node: 1abc" in text


def test_a_push_title_beyond_ascii_is_sent_as_an_encoded_word() -> None:
    alert = Alert("disk_full", "critical", "Disque plein — nœud arrêté", "Plus de place.")
    with http_receiver() as receiver:
        assert PushChannel(receiver.url).send(alert).ok
    title = receiver.requests[0].headers["title"]
    assert title.isascii() and title.startswith("=?utf-8?")
    assert receiver.requests[0].headers["priority"] == "5"


def test_an_http_error_status_is_a_failed_result() -> None:
    with http_receiver(status=500) as receiver:
        result = WebhookChannel(receiver.url).send(ALERT)
    assert not result.ok
    assert result.detail == "HTTP 500"


def test_nothing_listening_is_a_failed_result() -> None:
    result = PushChannel(f"http://127.0.0.1:{free_port()}/t", timeout_seconds=5).send(ALERT)
    assert not result.ok and "ConnectError" in result.detail


def test_a_server_that_never_answers_fails_the_send_at_its_timeout() -> None:
    with silent_server() as port:
        started = time.monotonic()
        webhook = WebhookChannel(f"http://127.0.0.1:{port}/", timeout_seconds=0.3).send(ALERT)
        email = EmailChannel(
            "127.0.0.1", "node@example.com", ["op@example.com"], port=port, timeout_seconds=0.3
        ).send(ALERT)
        took = time.monotonic() - started
    assert not webhook.ok and "no answer in time" in webhook.detail
    assert not email.ok and "no answer in time" in email.detail
    assert took < 20  # loosely: the timeouts held, nothing waited for the server


def test_the_email_arrives_with_subject_body_from_and_to() -> None:
    with smtp_receiver() as smtp:
        channel = EmailChannel(
            "127.0.0.1",
            "node@example.com",
            ["op@example.com", "backup@example.org"],
            port=smtp.port,
            security="none",
        )
        result = channel.send(ALERT)
    assert result.ok, result
    [mail] = smtp.mails
    assert mail.mail_from == "node@example.com"
    assert mail.rcpt_tos == ["op@example.com", "backup@example.org"]
    message = mail.message
    assert message["Subject"] == "[nodekeeper] The node keeps crashing"
    assert message["From"] == "node@example.com"
    assert message["To"] == "op@example.com, backup@example.org"
    assert message["X-Nodekeeper-Kind"] == "crash_loop"
    body = message.get_payload(decode=True).decode()
    assert "The node exited 5 times in 10 minutes." in body
    assert "Fix: Open the node's log" in body


def test_the_email_logs_in_with_the_password() -> None:
    with smtp_receiver(password="pw") as smtp:
        ok = EmailChannel(
            "127.0.0.1",
            "node@example.com",
            ["op@example.com"],
            port=smtp.port,
            security="none",
            username="node",
            password="pw",
        ).send(ALERT)
        wrong = EmailChannel(
            "127.0.0.1",
            "node@example.com",
            ["op@example.com"],
            port=smtp.port,
            security="none",
            username="node",
            password="nope",
        ).send(ALERT)
    assert ok.ok, ok
    assert not wrong.ok and "login refused: 535" in wrong.detail
    # smtplib tries the next mechanism (LOGIN after PLAIN) before it gives up.
    assert smtp.logins[0] == ("node", "pw")
    assert set(smtp.logins[1:]) == {("node", "nope")}
    assert len(smtp.mails) == 1


def test_starttls_required_but_not_offered_fails_instead_of_sending_in_clear() -> None:
    with smtp_receiver() as smtp:
        result = EmailChannel(
            "127.0.0.1", "node@example.com", ["op@example.com"], port=smtp.port
        ).send(ALERT)
    assert not result.ok and "STARTTLS" in result.detail
    assert smtp.mails == []
