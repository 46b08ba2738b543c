"""Real receivers on loopback for the alert tests: HTTP, SMTP, and a server that never
answers. Each records what arrived; the tests read it after the send has returned, so
nothing waits for something that might not happen."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support import free_port


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    url: str
    requests: list[Request] = field(default_factory=list)
    status: int = 200


@contextlib.contextmanager
def http_receiver(status: int = 200) -> Iterator[HttpReceiver]:
    """A real ``http.server`` on a free loopback port that records every request and
    answers ``status``."""
    port = free_port()
    receiver = HttpReceiver(url=f"http://127.0.0.1:{port}")
    receiver.status = status

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            receiver.requests.append(
                Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port that takes connections (the kernel's backlog completes the handshake) and
    never says a word: what a hung server looks like to a client. Yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", free_port()))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: Message


class _MailHandler:
    def __init__(self) -> None:
        self.mails: list[Mail] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(
            Mail(envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
        )
        return "250 Message accepted for delivery"


@dataclass
class SmtpReceiver:
    port: int
    mails: list[Mail]
    logins: list[tuple[str, str]]


@contextlib.contextmanager
def smtp_receiver(password: str | None = None) -> Iterator[SmtpReceiver]:
    """aiosmtpd on a free loopback port, plain SMTP. With ``password`` it offers AUTH
    (without TLS, for the test) and takes any login with that password."""
    handler = _MailHandler()
    logins: list[tuple[str, str]] = []

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, given = auth_data.login.decode(), auth_data.password.decode()
        logins.append((login, given))
        # handled=False: aiosmtpd then answers 535 itself (True means "I replied").
        return AuthResult(success=given == password, handled=False)

    kwargs: dict[str, Any] = {}
    if password is not None:
        kwargs = {"authenticator": authenticator, "auth_require_tls": False}
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    try:
        yield SmtpReceiver(controller.port, handler.mails, logins)
    finally:
        controller.stop()
