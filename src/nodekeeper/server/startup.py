"""What `server run` checks before it serves, in the order that changes nothing on failure.

1. Arguments (``--db`` is a database URL, ``--public-url`` an absolute http(s) URL):
   exit 2, nothing created.
2. The listening socket is bound before the data dir, the token or the database are
   touched, so a second server on a port in use fails without leaving state behind.
3. A network database that is not up yet (PostgreSQL starting after us under systemd or
   the Windows service manager) is retried with doubling backoff for ``--db-wait``
   seconds; then one line says it is unreachable.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import sqlalchemy as sa

from nodekeeper.backoff import doubling

from .store import create_db_engine

DB_EXAMPLES = "sqlite:////var/lib/nodekeeper/cp.db or postgresql://USER:PASSWORD@HOST:5432/DB"
RETRY_FIRST = 0.5
RETRY_MAX = 10.0
_ANY_HOST = {"0.0.0.0", "::", ""}
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class StartupError(Exception):
    """A reason the server cannot start; ``usage`` is true for a wrong argument."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def parse_db_url(text: str) -> sa.URL:
    """The URL, with plain ``postgresql://`` meaning the psycopg (3) driver we ship."""
    try:
        url = sa.make_url(text)
    except sa.exc.ArgumentError:
        raise StartupError(
            f"--db {text!r} is not a database URL; use e.g. {DB_EXAMPLES}", usage=True
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        # SQLAlchemy's default PostgreSQL driver is psycopg2, which we do not install.
        url = url.set(drivername="postgresql+psycopg")
    try:
        url.get_dialect().import_dbapi()
    except (sa.exc.NoSuchModuleError, ImportError):
        raise StartupError(
            f"--db {text!r}: {url.drivername!r} is not a supported database; use e.g. "
            f"{DB_EXAMPLES}",
            usage=True,
        ) from None
    return url


def public_url_for(given: str | None, host: str, port: int) -> tuple[str, list[str]]:
    """The URL nodes are told to use for artifacts and downloads, and warnings about it.

    Raises ValueError for a ``--public-url`` that is not an absolute http(s) URL."""
    if given is not None:
        parts = urlsplit(given)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"--public-url {given!r} must be an absolute http:// or https:// URL, e.g. "
                f"https://{given.split('://')[-1].strip('/') or 'version.example.net'}"
            )
        url = given.rstrip("/")
    else:
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}"
        parts = urlsplit(url)
    fix = f"pass --public-url https://HOST:{port} (the name nodes use to reach this server)"
    hostname = parts.hostname or ""
    if hostname in _ANY_HOST or hostname == "::":
        return url, [
            f"artifact and download URLs are announced as {url}, which no node can reach; {fix}"
        ]
    if given is None and hostname in _LOOPBACK:
        return url, [
            f"no --public-url: artifact URLs are announced as {url}, which only this machine "
            f"can reach; for nodes elsewhere, {fix}"
        ]
    return url, []


def dashboard_url(public_url: str, host: str, port: int) -> str:
    """Where an operator's browser finds the dashboard: the public URL, unless that names
    the any-address (0.0.0.0 / ::), which a browser cannot open; then this machine."""
    hostname = urlsplit(public_url).hostname or ""
    if hostname in _ANY_HOST:
        return f"http://localhost:{port}/dashboard"
    return f"{public_url}/dashboard"


def bind_listener(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound now so that a port in use fails first."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(
            f"--listen host {host!r} is unknown: {exc.strerror}", usage=True
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Like uvicorn: a restart may bind while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            reason = "the address is in use (another server already runs there?)"
        elif exc.errno == errno.EACCES:
            reason = "permission denied (ports below 1024 need privileges)"
        else:
            reason = exc.strerror or str(exc)
        raise StartupError(
            f"cannot listen on {where}: {reason}; stop the other server or pass --listen HOST:PORT"
        ) from None
    sock.set_inheritable(True)
    return sock


def wait_for_database(
    url: sa.URL,
    wait_seconds: float,
    *,
    shown: str,
    on_retry: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Connect once; for a network database retry with backoff until ``wait_seconds``.

    ``shown`` names the database in messages (the URL as given, password hidden)."""
    engine = create_db_engine(url.render_as_string(hide_password=False))
    deadline = clock() + max(0.0, wait_seconds)
    step = 0
    try:
        while True:
            try:
                with engine.connect():
                    return
            except sa.exc.OperationalError as exc:
                reason = _first_line(exc.orig or exc)
                if url.get_backend_name() == "sqlite":  # a file: waiting will not help
                    raise StartupError(f"cannot open the database {shown}: {reason}") from None
                delay = doubling(step, RETRY_FIRST, RETRY_MAX)
                left = deadline - clock()
                if left <= 0:
                    raise StartupError(
                        f"the database at {shown} is unreachable ({reason}); is it running "
                        f"and is the URL right? (waited {wait_seconds:g} s; --db-wait SECONDS "
                        "waits longer at start)"
                    ) from None
                delay = min(delay, left)
                wait = f"retrying in {delay:.1f} s"
                on_retry(f"the database at {shown} is unreachable ({reason}); {wait}")
                sleep(delay)
                step += 1
    finally:
        engine.dispose()


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
