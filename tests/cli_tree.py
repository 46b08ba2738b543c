"""Every command of every entry point, found by walking the argparse trees, so commands
added later are covered by the CLI tests without anyone listing them."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import nodekeeper.cli
import nodekeeper.keeper.__main__
import nodekeeper.launcher.cli
import storagenode.cli


@dataclass(frozen=True)
class EntryPoint:
    name: str  # as the operator types it
    module: str  # for `python -m MODULE`
    build_parser: Callable[[], argparse.ArgumentParser]
    main: Callable[[Sequence[str] | None], int]


ENTRY_POINTS = [
    EntryPoint("nodekeeper", "nodekeeper", nodekeeper.cli.build_parser, nodekeeper.cli.main),
    EntryPoint("storagenode", "storagenode", storagenode.cli.build_parser, storagenode.cli.main),
    EntryPoint(
        "nodekeeper-launcher",
        "nodekeeper.launcher",
        nodekeeper.launcher.cli.build_parser,
        nodekeeper.launcher.cli.main,
    ),
    EntryPoint(
        "python -m nodekeeper.keeper",
        "nodekeeper.keeper",
        nodekeeper.keeper.__main__.build_parser,
        nodekeeper.keeper.__main__.main,
    ),
]


@dataclass(frozen=True)
class Command:
    entry: EntryPoint
    path: tuple[str, ...]  # the subcommand words, e.g. ("rollout", "set")
    parser: argparse.ArgumentParser

    @property
    def name(self) -> str:
        return " ".join((self.entry.name, *self.path))

    def positionals(self) -> list[argparse.Action]:
        return [
            a
            for a in self.parser._actions
            if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
        ]

    def options(self) -> list[argparse.Action]:
        return [
            a
            for a in self.parser._actions
            if a.option_strings
            and not isinstance(a, argparse._HelpAction | argparse._VersionAction)
        ]


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def walk(entry: EntryPoint) -> Iterator[tuple[Command, bool]]:
    """(command, is_leaf) for the entry point's parser and every subcommand below it."""

    def visit(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator:
        sub = _subparsers(parser)
        yield Command(entry, path, parser), sub is None
        if sub is not None:
            seen: set[int] = set()
            for word, child in sub.choices.items():
                if id(child) not in seen:  # aliases share their parser
                    seen.add(id(child))
                    yield from visit(child, (*path, word))

    yield from visit(entry.build_parser(), ())


def all_commands() -> list[Command]:
    return [command for entry in ENTRY_POINTS for command, _ in walk(entry)]


def leaf_commands() -> list[Command]:
    return [command for entry in ENTRY_POINTS for command, leaf in walk(entry) if leaf]


def subcommand_help(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    """Each subcommand's one-line help as `--help` lists it."""
    sub = _subparsers(parser)
    if sub is None:
        return {}
    return {choice.dest: choice.help for choice in sub._choices_actions}
