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
        http=make_protocol(app.state.documents),
        host=host,
        port=port,
        access_log=False,  # admin changes are audited in the database; GET / is hot
        log_level=log_level,
        server_header=False,
        date_header=True,
    )
    return uvicorn.Server(config)


def run_server(
    settings: ServerSettings, host: str, port: int, sock: socket.socket | None = None
) -> int:
    """Serve until stopped; ``sock`` is a listener bound beforehand (see startup.py)."""
    build_server(settings, host, port).run(sockets=[sock] if sock is not None else None)
    return 0
