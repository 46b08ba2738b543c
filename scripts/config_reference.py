"""Writes docs/config-reference.md from the pydantic models of the keeper's config.

    .venv/bin/python scripts/config_reference.py > docs/config-reference.md

The reference used to be written by hand in DESIGN.md and drifted from the code (keys
added without a line, defaults changed in one place). Now the models are the only source:
every key of ``keeper.toml`` with its section, type, default and the ``description=`` of
its ``Field``. A field without a description stops the script, so a new key cannot be
added without saying what it does; ``tests/test_config_reference.py`` fails when the
committed file is not what this script prints.

This is a build-time tool in scripts/, not part of the package: the keeper never imports
it. The other settings (the control plane's and the launcher's flags, the node's
``config.toml``) are not pydantic models a user writes in a file, so the reference says
where they are documented instead (see ``OTHER_SETTINGS``).
"""

from __future__ import annotations

import json
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from nodekeeper import units
from nodekeeper.keeper.config import KeeperConfig
from nodekeeper.logs import settings as log_settings

COMMAND = ".venv/bin/python scripts/config_reference.py > docs/config-reference.md"

HEADER = f"""\
# Configuration reference

Generated from the pydantic models by `{COMMAND}`; do not edit by hand
(`tests/test_config_reference.py` fails when this file is not what the script prints).
To change a key's text, edit its `Field(description=...)` in the model and run the command.

## keeper.toml

Read by `nodekeeper run --config FILE` (and `python -m nodekeeper.keeper --config FILE`)
from `src/nodekeeper/keeper/config.py`; the `[logs]` table is
`src/nodekeeper/logs/settings.py`, the `[alerts]` tables `src/nodekeeper/alerts/config.py`.
Every key is optional except `update.server` when an `[update]` table is present (and a
channel's own required keys when its `[alerts.*]` table is); unknown keys are refused. A
bad file exits 2 with one line per problem: `FILE: key.path: what is allowed (got X)`.
Relative paths are resolved against the config file's directory; `{{data_dir}}` and
`{{config_dir}}` are replaced in paths, commands, URLs and environment values. The file may
be UTF-8 (with or without a BOM) or UTF-16 with a BOM. Sizes are bytes or text like
`"512 MiB"`, `"2GB"`; durations are seconds or text like `"30d"`, `"12h"`.
"""

# (what, where it is set, where it is documented, why it is not generated)
OTHER_SETTINGS = [
    (
        "control plane (`nodekeeper server run`)",
        "command-line flags, `NODEKEEPER_ADMIN_TOKEN`",
        "`nodekeeper server run --help`; `ServerSettings` in "
        "`src/nodekeeper/server/settings.py` (a dataclass)",
        "flags, not a file: argparse already checks and describes each one",
    ),
    (
        "launcher (`nodekeeper-launcher`)",
        "command-line flags; reads `data_dir` and `status.listen` from keeper.toml",
        "`nodekeeper-launcher --help`; `src/nodekeeper/launcher/settings.py`",
        "the launcher uses the standard library only (pydantic would break that rule), and "
        "its settings are flags so that a keeper release cannot break it",
    ),
    (
        "reference storage node `config.toml`",
        "written by `storagenode setup`",
        "`docs/decisions/004-reference-node-contract.md`; `src/storagenode/config.py`",
        "written by a command, not by hand; the reference node keeps its own small reader",
    ),
]


def main() -> int:
    try:
        text = render()
    except MissingDescription as exc:
        print(f"config_reference: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


class MissingDescription(Exception):
    """A config key has no ``Field(description=...)``."""


def render(root: type[BaseModel] = KeeperConfig) -> str:
    """The whole reference for ``root`` (the keeper's config; tests pass small models)."""
    parts = [HEADER]
    for section, model, doc in sections(root):
        parts.append(f"### {section}\n")
        if doc:
            parts.append(doc + "\n")
        parts.append("| key | type | default | description |\n|---|---|---|---|")
        for name, field in model.model_fields.items():
            if field.exclude or _submodel(field.annotation) is not None:
                continue
            key = name if section == "top level" else f"{section.strip('[]')}.{name}"
            if not field.description:
                raise MissingDescription(
                    f"{model.__name__}.{name} ({key}) has no Field(description=...)"
                )
            parts.append(
                f"| `{name}` | {type_text(field)} | {default_text(field)} | "
                f"{_cell(field.description)} |"
            )
        parts.append("")
    parts.append(
        "## Settings that are not keys of keeper.toml\n\n"
        "These are not pydantic models that a user writes in a file, so they are not "
        "generated here.\n\n"
        "| what | where it is set | where it is documented | why it stays as it is |\n"
        "|---|---|---|---|"
    )
    parts.extend("| " + " | ".join(row) + " |" for row in OTHER_SETTINGS)
    return "\n".join(parts) + "\n"


def sections(model: type[BaseModel]) -> Iterator[tuple[str, type[BaseModel], str]]:
    """The top level, then one ``[table]`` per field whose type is a model."""
    yield "top level", model, ""
    yield from _tables(model, "")


def _tables(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, type[BaseModel], str]]:
    """Each table, then its own sub-tables (``[alerts]``, ``[alerts.webhook]``, ...)."""
    for name, field in model.model_fields.items():
        sub = _submodel(field.annotation)
        if sub is None:
            continue
        doc = _docstring(sub)
        if field.default is None:
            doc = (doc + " " if doc else "") + "The whole table is optional."
        yield f"[{prefix}{name}]", sub, doc
        yield from _tables(sub, f"{prefix}{name}.")


def type_text(field: FieldInfo) -> str:
    validators = [m.func for m in field.metadata if isinstance(m, BeforeValidator)]
    if any(_is_size_parser(func) for func in validators):
        base = "size"
    elif log_settings._duration in validators:
        base = "duration"
    else:
        base = _type_name(field.annotation)
    bounds = _bounds(field.metadata)
    return _cell(base + (f" ({bounds})" if bounds else ""))


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is None or value is PydanticUndefined:
        return "unset"
    return _cell(f"`{_toml(value)}`")


def _is_size_parser(func: Any) -> bool:
    # keeper/config.py wraps units.parse_size (None allowed); logs/settings.py names the
    # field in its errors. Both accept the same text.
    from nodekeeper.keeper import config

    return func in (config.parse_size, log_settings._size, units.parse_size)


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is typing.Annotated:
        # Bounds written inside a union member, e.g. Annotated[float, Field(gt=0)] | None.
        metadata = [m for extra in args[1:] for m in getattr(extra, "metadata", [extra])]
        bounds = _bounds(metadata)
        return _type_name(args[0]) + (f" ({bounds})" if bounds else "")
    if origin in (typing.Union, types.UnionType):
        # "unset" in the default column already says that None is allowed.
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin is Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin is list:
        return f"array of {_plural(_type_name(args[0]))}"
    if origin is dict:
        return f"table of {_plural(_type_name(args[1]))}"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def _plural(name: str) -> str:
    word, sep, rest = name.partition(" ")
    if word in ("string", "integer", "number", "boolean"):
        word += "s"
    return word + sep + rest


def _bounds(metadata: list[Any]) -> str:
    words = []
    for item in metadata:
        if isinstance(item, annotated_types.Gt):
            words.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Ge):
            words.append(f"≥ {item.ge}")
        elif isinstance(item, annotated_types.Lt):
            words.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.Le):
            words.append(f"≤ {item.le}")
        elif isinstance(item, annotated_types.MinLen):
            words.append(f"at least {item.min_length}")
    return ", ".join(words)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return str(value)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    candidates = get_args(annotation) if get_origin(annotation) else (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _docstring(model: type[BaseModel]) -> str:
    doc = model.__doc__ or ""
    return " ".join(doc.split()).replace("``", "`")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("\\\\|", "\\|")


if __name__ == "__main__":
    sys.exit(main())
