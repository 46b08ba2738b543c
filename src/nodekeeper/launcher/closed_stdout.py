"""Ending a command quietly when whoever reads its output has gone (`... | head`).

Python ignores SIGPIPE, so a write into a pipe without a reader raises BrokenPipeError:
a traceback for what is normal use, and, if the data sat in the buffer, a second
"Exception ignored" when the interpreter flushes stdout at exit. This is the recipe from
the Python docs (library/signal, "Note on SIGPIPE"): flush inside the guard, and on a
broken pipe point stdout at devnull so the flush at exit has somewhere to go.

The exit code is 141 (128 + SIGPIPE): what a shell reports for a C tool (`cat`, `jq`)
stopped by SIGPIPE at the same point, so `set -o pipefail` scripts see the usual value,
and it is distinct from 1 (the command failed) and 2 (bad usage).

A BrokenPipeError that reaches a command's main() is taken to be its own output: the
network clients below main() turn their socket errors into their own exceptions.

It lives in the launcher package because the launcher may import nothing but the standard
library and its own package; `nodekeeper`, `python -m nodekeeper.keeper` and `storagenode`
use it from here (standard library only, cheap to import).
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable

EXIT_STDOUT_CLOSED = 141


def run_guarded(body: Callable[[], int]) -> int:
    """``body()``'s exit code, or EXIT_STDOUT_CLOSED once stdout's reader has gone.
    SystemExit (argparse's --help, --version, usage errors) passes through after the flush."""
    try:
        try:
            return body()
        finally:
            # Here, not at interpreter exit, so a closed pipe is caught below.
            if sys.stdout is not None:
                sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_STDOUT_CLOSED


def _discard_stdout() -> None:
    """Send whatever is still buffered, and anything written later, to devnull."""
    if sys.stdout is None:
        return
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return  # not a real file (a test's capture, a service without a console)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
