"""The control address (loopback only): ``GET /pulse``, ``GET /dashboard`` and
``POST /shutdown``.

``/dashboard`` is a small read-only HTML page (node ID, version, space used and
allocated, uptime) that the tray app's "Open dashboard" opens; every value is escaped.

The keeper probes the pulse for liveness and reads ``schema_version`` to know whether a
rollback is safe; ``/shutdown`` with ``Authorization: Bearer <shutdown.token>`` asks for a
graceful stop (202), the portable equivalent of SIGTERM (Windows has none for services).
"""

from __future__ import annotations

import hmac
import html

from storagenode.httpbase import JsonHandler

ENDPOINTS = "no such endpoint: GET /pulse, GET /dashboard, POST /shutdown"


def dashboard_html(pulse: dict[str, object]) -> bytes:
    """The dashboard page for a pulse (pure)."""
    used, allocated = pulse.get("used_bytes"), pulse.get("allocated_bytes")
    uptime = float(pulse.get("uptime_seconds") or 0)  # type: ignore[arg-type]
    hours, rest = divmod(int(uptime), 3600)
    rows = [
        ("Node ID", pulse.get("node_id")),
        ("Version", pulse.get("version")),
        ("Used", f"{used} of {allocated} bytes"),
        ("Uptime", f"{hours} h {rest // 60} min"),
    ]
    cells = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><title>Storage node</title>'
        '<meta http-equiv="refresh" content="30"></head><body><h1>Storage node</h1>'
        f"<table>{cells}</table></body></html>\n"
    )
    return page.encode("utf-8")


class ControlHandler(JsonHandler):
    timeout = 10

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/pulse":
            self.send_json(200, self.state.pulse())
        elif path == "/dashboard":
            self._send_html(dashboard_html(self.state.pulse()))
        else:
            self.send_error_json(404, ENDPOINTS)

    def _send_html(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/shutdown":
            self.send_error_json(404, ENDPOINTS)
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
