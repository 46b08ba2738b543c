"""docs/config-reference.md is what scripts/config_reference.py prints from the models.

The reference is generated so that it cannot drift from the code; this test is what makes
"cannot" true. It runs the script as a user would (a real process, the project's
interpreter) and compares its output with the committed file byte for byte.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Literal

import pytest
from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "config_reference.py"
REFERENCE = ROOT / "docs" / "config-reference.md"
REGENERATE = ".venv/bin/python scripts/config_reference.py > docs/config-reference.md"


def _generate() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )


def test_the_committed_reference_is_what_the_generator_prints() -> None:
    result = _generate()
    assert result.returncode == 0, f"the generator failed:\n{result.stderr}"
    committed = REFERENCE.read_text(encoding="utf-8")
    assert result.stdout == committed, (
        f"{REFERENCE.relative_to(ROOT)} is not current (a config model or the file changed). "
        f"Regenerate it with `{REGENERATE}` and commit the result."
    )


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("config_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_key_of_every_table_is_in_the_reference() -> None:
    # Guards the generator itself: a table or key it skipped would pass the comparison.
    from nodekeeper.keeper.config import KeeperConfig

    reference = REFERENCE.read_text(encoding="utf-8")
    tables = [name for name, field in KeeperConfig.model_fields.items() if _model_of(field)]
    assert set(tables) == {
        "node",
        "probe",
        "restart",
        "stop",
        "limits",
        "status",
        "logs",
        "firewall",
        "alerts",
        "reachability",
        "update",
    }
    pending = [(table, _model_of(KeeperConfig.model_fields[table])) for table in tables]
    while pending:
        table, model = pending.pop()
        assert model is not None
        block = reference.split(f"### [{table}]\n", 1)[1].split("\n### ", 1)[0]
        for name, field in model.model_fields.items():
            sub = _model_of(field)
            if sub is not None:  # a sub-table has its own section: [alerts.webhook]
                pending.append((f"{table}.{name}", sub))
                continue
            assert f"| `{name}` |" in block, f"[{table}] {name} is missing from the reference"
    assert "| `data_dir` |" in reference.split("### top level\n", 1)[1].split("\n### ", 1)[0]


def test_a_key_without_a_description_is_refused_by_name() -> None:
    generator = _generator()

    class Table(BaseModel):
        described: int = Field(default=1, description="Says what it does.")
        undescribed: int = 2

    class Root(BaseModel):
        table: Table = Field(default_factory=Table)

    named = r"Table\.undescribed \(table\.undescribed\)"
    with pytest.raises(generator.MissingDescription, match=named):
        generator.render(Root)


def test_types_defaults_and_bounds_are_written_as_an_operator_reads_them() -> None:
    generator = _generator()
    from nodekeeper.keeper.config import Seconds, Size

    class Table(BaseModel):
        when: Literal["random", "now"] = Field(default="random", description="d")
        wait: Seconds = Field(default=5.0, description="d")
        limit: Size = Field(default=None, description="d")
        argv: list[str] = Field(default=["run", "{x}"], description="d")
        server: str = Field(description="d")

    class Root(BaseModel):
        table: Table | None = None

    text = generator.render(Root)
    assert '| `when` | "random" \\| "now" | `"random"` | d |' in text
    assert "| `wait` | number (> 0) | `5.0` | d |" in text
    assert "| `limit` | size (≥ 1) | unset | d |" in text
    assert '| `argv` | array of strings | `["run", "{x}"]` | d |' in text
    assert "| `server` | string | required | d |" in text
    assert "The whole table is optional." in text


def _model_of(field: FieldInfo) -> type[BaseModel] | None:
    for candidate in getattr(field.annotation, "__args__", (field.annotation,)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None
