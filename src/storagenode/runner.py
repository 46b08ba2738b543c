"""``storagenode run``: open the store, serve both addresses, stop gracefully.

Start order: config, identity, storage dir check, database (migrations and crash
cleanup), public listener, then the control listener, so a pulse that answers means
the node is fully up. Stop order: stop accepting, let requests in flight finish (within
STOP_GRACE_SECONDS), close the database, then close the control listener.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import FrameType

from storagenode import exitcodes, storagedir
from storagenode.buildinfo import VERSION
from storagenode.config import NotConfiguredError, load_config, setup_hint
from storagenode.control import ControlHandler
from storagenode.httpbase import NodeHTTPServer
from storagenode.identity import IdentityError, load_identity, node_id_text
from storagenode.log import configure
from storagenode.migrations import DowngradeError, MigrationError
from storagenode.public import PublicHandler
from storagenode.state import NodeState, StopRequest
from storagenode.store import PieceStore

# The keeper waits 30 s after asking for a stop before it kills the process tree; finish
# well inside that so the database is always closed cleanly.
STOP_GRACE_SECONDS = 20.0
# How often the accept loops look for a stop request: bounds the time a stop takes.
POLL_INTERVAL = 0.05


def run(config_dir: Path, log_level: str | None = None) -> int:
    t0 = time.monotonic()
    log = configure(log_level or "INFO")
    stop = StopRequest()
    _install_stop_signals(stop)
    try:
        config = load_config(config_dir)
        if log_level is None:
            log = configure(config.log_level)
        _key, raw_id = load_identity(config.identity_path)
        token = config.token_path.read_text(encoding="ascii").strip()
    except NotConfiguredError as exc:
        log.error(str(exc))
        return exitcodes.NOT_CONFIGURED
    except (IdentityError, OSError) as exc:
        log.error(f"{setup_hint(config_dir)} ({exc})")
        return exitcodes.NOT_CONFIGURED
    if not token:
        log.error(f"{setup_hint(config_dir)} ({config.token_path} is empty)")
        return exitcodes.NOT_CONFIGURED
    node_id = node_id_text(raw_id)

    try:
        storagedir.verify(config.storage_dir, node_id)
        store = PieceStore.open(config.storage_dir, config.allocated_bytes)
    except storagedir.StorageDirError as exc:
        log.error(str(exc))
        return exitcodes.STORAGE_UNAVAILABLE
    except DowngradeError as exc:
        log.error(str(exc))
        return exitcodes.DOWNGRADE_REFUSED
    except MigrationError as exc:
        log.error(str(exc), exc_info=exc.__cause__ is not None)
        return exitcodes.MIGRATION_FAILED
    except OSError as exc:
        log.error(f"cannot open the piece store in {config.storage_dir}: {exc}")
        return exitcodes.STORAGE_UNAVAILABLE

    if stop.is_set():
        store.close()
        log.info("stopped before serving", extra={"fields": {"reason": stop.reason}})
        return exitcodes.OK
    state = NodeState(
        version=VERSION, node_id=node_id, store=store, shutdown_token=token, stop=stop
    )
    servers: list[NodeHTTPServer] = []
    try:
        for address, handler in (
            (config.listen, PublicHandler),
            (config.control_listen, ControlHandler),
        ):
            try:
                servers.append(NodeHTTPServer(address, handler, state))
            except OSError as exc:
                log.error(f"cannot listen on {address}: {exc.strerror or exc}")
                return exitcodes.FAILURE
    finally:
        if len(servers) < 2:
            for server in servers:
                server.server_close()
            store.close()
    public, control = servers

    threads = [
        threading.Thread(target=s.serve_forever, args=(POLL_INTERVAL,), name=n, daemon=True)
        for s, n in ((public, "public"), (control, "control"))
    ]
    for thread in threads:
        thread.start()
    log.info(
        "node started",
        extra={
            "fields": {
                "version": VERSION,
                "node_id": node_id,
                "listen": f"{public.server_name}:{public.server_port}",
                "control": f"{control.server_name}:{control.server_port}",
                "schema_version": store.schema_version,
                "used_bytes": store.used_bytes,
                "allocated_bytes": store.allocated_bytes,
                "startup_ms": round((time.monotonic() - t0) * 1000),
            }
        },
    )
    # A timed wait, because an untimed one cannot be interrupted by Ctrl-C on Windows.
    while not stop.event.wait(0.5):
        pass

    log.info("stopping", extra={"fields": {"reason": stop.reason}})
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
    return exitcodes.OK


def _install_stop_signals(stop: StopRequest) -> None:
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.request(f"signal {signal.Signals(signum).name}")

    names = ["SIGTERM", "SIGINT", "SIGBREAK"]  # SIGBREAK: CTRL_BREAK_EVENT on Windows
    for name in names:
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, on_signal)
