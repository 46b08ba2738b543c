"""The HTTP plumbing both listeners share (standard library only: it starts in a few
milliseconds, which is part of every update's downtime)."""

from __future__ import annotations

import json
import os
import socket
import socketserver
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from storagenode.addresses import Address
from storagenode.log import get_logger
from storagenode.state import NodeState


class NodeHTTPServer(ThreadingHTTPServer):
    # Handler threads are daemons: the run loop waits for uploads itself (with a deadline)
    # instead of socketserver joining every thread, idle keep-alives included.
    daemon_threads = True
    block_on_close = False
    # On Windows SO_REUSEADDR lets another process steal a bound port; elsewhere it only
    # allows a quick restart while old connections sit in TIME_WAIT.
    allow_reuse_address = os.name != "nt"
    request_queue_size = 128

    def __init__(self, address: Address, handler: type[BaseHTTPRequestHandler], state: NodeState):
        self.address_family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        self.state = state
        super().__init__((address.host, address.port), handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup of the host (getfqdn), which can
        # take seconds on a machine with broken DNS; we never use the name. TCPServer's
        # version sets SO_REUSEADDR and binds.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: object, client_address: object) -> None:
        # socketserver would print a bare traceback; the keeper reads JSON lines.
        get_logger().error(
            "request failed", exc_info=True, extra={"fields": {"client": str(client_address)}}
        )


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "storagenode"
    timeout = 60  # seconds a client may stay silent mid-request
    server: NodeHTTPServer

    @property
    def state(self) -> NodeState:
        return self.server.state

    def send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        # One request per connection: a refused upload leaves its body unread, and it keeps
        # graceful stop simple (no idle keep-alive connections to wait for).
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.close_connection = True

    def send_error_json(self, status: int, message: str) -> None:
        self.send_json(status, {"error": message})

    def log_message(self, format: str, *args: Any) -> None:
        get_logger().debug(format % args, extra={"fields": {"client": self.client_address[0]}})

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        get_logger().debug(
            "request",
            extra={"fields": {"method": self.command, "path": self.path, "status": code}},
        )
