"""``storagenode run``: open the store, serve both addresses, stop gracefully.

Start order: config, identity, storage dir check, database (migrations and crash
cleanup), public listener, then the control listener, so a pulse that answers means
the node is fully up. Stop order: stop accepting, let requests in flight finish (within
STOP_GRACE_SECONDS), close the database, then close the control listener.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType

from storagenode import exitcodes, storagedir
from storagenode.buildinfo import VERSION
from storagenode.config import NodeConfig, NotConfiguredError, load_config, setup_hint
from storagenode.control import ControlHandler
from storagenode.httpbase import NodeHTTPServer
from storagenode.identity import IdentityError, load_identity, node_id_text
from storagenode.log import configure
from storagenode.migrations import DowngradeError, MigrationError
from storagenode.public import PublicHandler
from storagenode.quic import QuicProbeResponder
from storagenode.state import NodeState, StopRequest
from storagenode.store import PieceStore

# The keeper waits 30 s after asking for a stop before it kills the process tree; finish
# well inside that so the database is always closed cleanly.
STOP_GRACE_SECONDS = 20.0
# How often the accept loops look for a stop request: bounds the time a stop takes.
POLL_INTERVAL = 0.05


class _Exit(Exception):
    """Leave ``run`` early with an exit code, after the message was logged."""

    def __init__(self, code: int) -> None:
        self.code = code


def run(config_dir: Path, log_level: str | None = None) -> int:
    started = time.monotonic()
    log = configure(log_level or "INFO")
    stop = StopRequest()
    _install_stop_signals(stop)
    try:
        config, node_id, token = _load(config_dir, log_level, log)
        store = _open_store(config, node_id, log)
    except _Exit as exc:
        return exc.code
    if config.operator:  # as Storj's node does: the payout settings in the log at start
        log.info("operator", extra={"fields": config.operator})
    if stop.is_set():
        store.close()
        log.info("stopped before serving", extra={"fields": {"reason": stop.reason}})
        return exitcodes.OK
    state = NodeState(VERSION, node_id, store, token, stop=stop)
    try:
        public, control = _bind(config, state, log)
    except _Exit as exc:
        store.close()
        return exc.code
    quic = _quic_responder(public, log)
    try:
        _serve(public, control, state, started, log)
    finally:
        if quic is not None:
            quic.close()
    return exitcodes.OK


def _quic_responder(public: NodeHTTPServer, log: logging.Logger) -> QuicProbeResponder | None:
    """UDP on the public port (the one bound, also for port 0), answering the control
    plane's QUIC probe as quic-go would (decision 082). A UDP port taken by something else
    is a warning, not a failure: the node's TCP service does not need it."""
    try:
        return QuicProbeResponder(public.server_name, public.server_port).start()
    except OSError as exc:
        log.warning(
            f"cannot listen on UDP {public.server_name}:{public.server_port} "
            f"({exc.strerror or exc}); the reachability check's QUIC probe will get no answer"
        )
        return None


def _load(
    config_dir: Path, log_level: str | None, log: logging.Logger
) -> tuple[NodeConfig, str, str]:
    """(config, node ID text, shutdown token), or _Exit(NOT_CONFIGURED)."""
    try:
        config = load_config(config_dir)
        if log_level is None:
            configure(config.log_level)
        _key, raw_id = load_identity(config.identity_path)
        token = config.token_path.read_text(encoding="ascii").strip()
    except NotConfiguredError as exc:
        log.error(str(exc))
        raise _Exit(exitcodes.NOT_CONFIGURED) from None
    except (IdentityError, OSError, UnicodeDecodeError) as exc:
        log.error(f"{setup_hint(config_dir)} ({exc})")
        raise _Exit(exitcodes.NOT_CONFIGURED) from None
    if not token:
        log.error(f"{setup_hint(config_dir)} ({config.token_path} is empty)")
        raise _Exit(exitcodes.NOT_CONFIGURED)
    return config, node_id_text(raw_id), token


def _open_store(config: NodeConfig, node_id: str, log: logging.Logger) -> PieceStore:
    try:
        storagedir.verify(config.storage_dir, node_id)
        return PieceStore.open(config.storage_dir, config.allocated_bytes)
    except storagedir.StorageDirError as exc:
        log.error(str(exc))
        raise _Exit(exitcodes.STORAGE_UNAVAILABLE) from None
    except DowngradeError as exc:
        log.error(str(exc))
        raise _Exit(exitcodes.DOWNGRADE_REFUSED) from None
    except MigrationError as exc:
        log.error(str(exc), exc_info=exc.__cause__ is not None)
        raise _Exit(exitcodes.MIGRATION_FAILED) from None
    except OSError as exc:
        log.error(f"cannot open the piece store in {config.storage_dir}: {exc}")
        raise _Exit(exitcodes.STORAGE_UNAVAILABLE) from None


def _bind(
    config: NodeConfig, state: NodeState, log: logging.Logger
) -> tuple[NodeHTTPServer, NodeHTTPServer]:
    """Both listeners, public first; or _Exit(FAILURE) with none left open."""
    servers: list[NodeHTTPServer] = []
    for address, handler in (
        (config.listen, PublicHandler),
        (config.control_listen, ControlHandler),
    ):
        try:
            servers.append(NodeHTTPServer(address, handler, state))
        except OSError as exc:
            for server in servers:
                server.server_close()
            log.error(f"cannot listen on {address}: {exc.strerror or exc}")
            raise _Exit(exitcodes.FAILURE) from None
    public, control = servers
    return public, control


def _serve(
    public: NodeHTTPServer,
    control: NodeHTTPServer,
    state: NodeState,
    started: float,
    log: logging.Logger,
) -> None:
    for server, name in ((public, "public"), (control, "control")):
        threading.Thread(
            target=server.serve_forever, args=(POLL_INTERVAL,), name=name, daemon=True
        ).start()
    store = state.store
    log.info(
        "node started",
        extra={
            "fields": {
                "version": state.version,
                "node_id": state.node_id,
                "listen": f"{public.server_name}:{public.server_port}",
                "control": f"{control.server_name}:{control.server_port}",
                "schema_version": store.schema_version,
                "used_bytes": store.used_bytes,
                "allocated_bytes": store.allocated_bytes,
                "startup_ms": round((time.monotonic() - started) * 1000),
            }
        },
    )
    # A timed wait, because an untimed one cannot be interrupted by Ctrl-C on Windows.
    while not state.stop.event.wait(0.5):
        pass

    log.info("stopping", extra={"fields": {"reason": state.stop.reason}})
    public.shutdown()
    public.server_close()
    if not state.inflight.wait_idle(STOP_GRACE_SECONDS):
        log.warning(
            "requests still in flight at the stop deadline; they are abandoned "
            "(unacknowledged uploads are cleaned up at the next start)",
            extra={"fields": {"in_flight": state.inflight.count}},
        )
    store.close()
    control.shutdown()
    control.server_close()
    log.info("node stopped")


def _install_stop_signals(stop: StopRequest) -> None:
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.request(f"signal {signal.Signals(signum).name}")

    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):  # SIGBREAK: CTRL_BREAK_EVENT on Windows
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, on_signal)
