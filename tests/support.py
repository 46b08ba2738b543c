"""Small helpers shared by test suites: free ports, a patched environment, merged config
sections, and running the `nodekeeper` command in this process.

Most CLI tests are about what a command says and returns, not about the process around it,
so they call `nodekeeper.cli.main(argv)` here instead of paying ~1 s of interpreter start-up
per `python -m nodekeeper`. What is about the process (start-up, signals, exit status of a
real program, pipes) stays a subprocess test and carries the `e2e` marker (tests/README.md).
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import random
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

# Ports are handed out from below the kernel's ephemeral range (32768-60999 here), where
# bind(0) would pick them: there, every outgoing connection also takes a local port, and
# a keeper's keep-alive connection to its control plane once held the port a node was
# then told to listen on, for minutes (a crash loop of "address in use", seen in a full
# run). Each xdist worker takes its own slice, starting at a random place in it (another
# run may be going on beside), and a port is only handed out after a bind to it worked.
_FIRST_PORT, _SLICE = 20000, 1500
# Not handed out again while this many others were handed out after it: a port freed by a
# test that ended is fine to give again, two calls in a row must never get the same one.
_RECENT = 1000
_recent: collections.deque[int] = collections.deque(maxlen=_RECENT)


def _slice_start() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    number = int(worker[2:]) if worker[2:].isdigit() else 0
    return _FIRST_PORT + (number % 8) * _SLICE  # 8 slices: 20000-31999


_next_port = _slice_start() + random.randrange(_SLICE)


def free_port() -> int:
    """A loopback port nothing listens on now, outside the ephemeral range, not one of the
    last ``_RECENT`` this process handed out."""
    global _next_port
    start = _slice_start()
    for _ in range(_SLICE):
        port = _next_port
        _next_port = start + (_next_port - start + 1) % _SLICE
        if port in _recent:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _recent.append(port)
        return port
    raise RuntimeError(f"no free port left in {start}-{start + _SLICE - 1}")


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, table by table (a test's config sections over
    its defaults): a nested dict is merged, anything else replaced."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@contextlib.contextmanager
def environ(changes: Mapping[str, str | None]) -> Iterator[None]:
    """os.environ with ``changes`` applied (None removes the name), restored on exit."""
    saved = {name: os.environ.get(name) for name in changes}

    def apply(values: Mapping[str, str | None]) -> None:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    apply(changes)
    try:
        yield
    finally:
        apply(saved)


def run_main(
    argv: Sequence[str], env: Mapping[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """`nodekeeper ARGV...` through `nodekeeper.cli.main` in this process, with ``env``
    changes, returned as a subprocess would be: exit code, stdout and stderr as text.

    argparse's SystemExit becomes the exit code (a string code is printed, as Python does
    at exit). Any other exception propagates: a traceback is a failure either way, and
    here it points at the line."""
    from nodekeeper.cli import main

    out, err = io.StringIO(), io.StringIO()
    with environ(env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=err)
                code = 1
    return subprocess.CompletedProcess(["nodekeeper", *argv], code, out.getvalue(), err.getvalue())
