"""`--version` on every entry point, and `--help` that describes every argument and
every subcommand. The parser trees are walked, so commands added later are checked too."""

from __future__ import annotations

import argparse

import pytest

import nodekeeper
from storagenode import buildinfo
from tests.cli_tree import ENTRY_POINTS, Command, EntryPoint, all_commands, subcommand_help

VERSIONS = {
    "nodekeeper": f"nodekeeper {nodekeeper.__version__}",
    "storagenode": f"storagenode {buildinfo.VERSION}",
    "nodekeeper-launcher": f"nodekeeper-launcher {nodekeeper.__version__}",
    "python -m nodekeeper.keeper": f"nodekeeper {nodekeeper.__version__}",
}


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda e: e.name)
def test_version_flag(entry: EntryPoint, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        entry.main(["--version"])
    assert info.value.code == 0
    out, err = capsys.readouterr()
    assert (out, err) == (VERSIONS[entry.name] + "\n", "")


def _arguments() -> list:
    params = []
    for command in all_commands():
        for action in command.positionals() + command.options():
            label = action.option_strings[0] if action.option_strings else action.dest
            params.append(pytest.param(command, action, id=f"{command.name} {label}"))
    return params


@pytest.mark.parametrize(("command", "action"), _arguments())
def test_every_argument_is_described(command: Command, action: argparse.Action) -> None:
    assert action.help and action.help != argparse.SUPPRESS, (
        f"`{command.name} --help` shows {action.dest} without a description"
    )
    # The help says more than the name does.
    assert action.dest.replace("_", " ") != action.help.strip().lower()


@pytest.mark.parametrize("command", all_commands(), ids=lambda c: c.name)
def test_every_subcommand_is_described(command: Command) -> None:
    for word, text in subcommand_help(command.parser).items():
        assert text, f"`{command.name} --help` lists {word} without a description"
