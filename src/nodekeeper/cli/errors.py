"""How a `nodekeeper` command fails: the error type, the exit codes, the one error line.

Every command group (keeper, control plane, quickstart) raises `CommandError` and uses
these exit codes, and so do the entries that run one group alone (`python -m
nodekeeper.keeper`). That is why this module sits at the bottom of the CLI package and
imports nothing of the CLI: the command groups import it, never the CLI root
(`nodekeeper.cli.root`), which imports them (pyproject.toml, [tool.importlinter]).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from nodekeeper.launcher.closed_stdout import EXIT_STDOUT_CLOSED as EXIT_STDOUT_CLOSED

# 0 ok, 1 runtime failure, 2 usage or configuration error (argparse's own).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
# 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C.
EXIT_INTERRUPTED = 130
# EXIT_STDOUT_CLOSED (141): stdout's reader went away (`nodekeeper ... | head`); defined
# with the guard that returns it (nodekeeper.launcher.closed_stdout).


class CommandError(Exception):
    """A failure with a message for the user; ``exit_code`` says how the command ends."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_of(handler: Callable[[], int | None]) -> int:
    """Run a command's handler and say how the process ends: its exit code (none means
    EXIT_OK), or for a CommandError its one line on stderr and its code. Ctrl-C ends
    quietly: the operator asked for it, a traceback would only hide the last output."""
    try:
        return int(handler() or EXIT_OK)
    except CommandError as exc:
        print(f"nodekeeper: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
