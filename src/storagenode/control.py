"""The control address (loopback only): ``GET /pulse`` and ``POST /shutdown``.

The keeper probes the pulse for liveness and reads ``schema_version`` to know whether a
rollback is safe; ``/shutdown`` with ``Authorization: Bearer <shutdown.token>`` asks for a
graceful stop (202), the portable equivalent of SIGTERM (Windows has none for services).
"""

from __future__ import annotations

import hmac

from storagenode.httpbase import JsonHandler


class ControlHandler(JsonHandler):
    timeout = 10

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/pulse":
            self.send_json(200, self.state.pulse())
        else:
            self.send_error_json(404, "no such endpoint: GET /pulse, POST /shutdown")

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/shutdown":
            self.send_error_json(404, "no such endpoint: GET /pulse, POST /shutdown")
            return
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.send_json(
                401,
                {"error": "send Authorization: Bearer <contents of shutdown.token>"},
                {"WWW-Authenticate": "Bearer"},
            )
            return
        if not hmac.compare_digest(token.strip().encode(), self.state.shutdown_token.encode()):
            self.send_error_json(403, "wrong shutdown token")
            return
        self.send_json(202, {"status": "stopping"})
        self.state.stop.request("shutdown requested on the control address")
