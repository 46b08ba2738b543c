"""Small helpers shared by test suites: free ports, a patched environment, merged config
sections, and running the `nodekeeper` command in this process.

Most CLI tests are about what a command says and returns, not about the process around it,
so they call `nodekeeper.cli.main(argv)` here instead of paying ~1 s of interpreter start-up
per `python -m nodekeeper`. What is about the process (start-up, signals, exit status of a
real program, pipes) stays a subprocess test and carries the `e2e` marker (tests/README.md).
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

# Ports this process has handed out: the kernel may give the port it just freed to the
# very next bind(0), and two calls in a row then returned the same port (a node set up with
# --listen and --control-listen equal, seen once in a full run).
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on now, never one this process handed out before."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


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
