"""Runs one control-plane replica under uvicorn."""

from __future__ import annotations

import socket

import uvicorn

from .app import create_app
from .fastlane import make_protocol
from .settings import ServerSettings


def build_server(
    settings: ServerSettings, host: str, port: int, log_level: str = "info"
) -> uvicorn.Server:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        http=make_protocol(app.state.documents, app.state.request_counts),
        host=host,
        port=port,
        access_log=False,  # admin changes are audited in the database; GET / is hot
        log_level=log_level,
        server_header=False,
        date_header=True,
        # uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 and ::1 (and from
        # $FORWARDED_ALLOW_IPS) on every route: any local process could then name the
        # address the reachability check dials. Whom to believe is `--trusted-proxy`'s
        # (decision 082), so request.client stays the TCP peer.
        proxy_headers=False,
    )
    return uvicorn.Server(config)


def run_server(
    settings: ServerSettings, host: str, port: int, sock: socket.socket | None = None
) -> int:
    """Serve until stopped; ``sock`` is a listener bound beforehand (see startup.py)."""
    build_server(settings, host, port).run(sockets=[sock] if sock is not None else None)
    return 0
