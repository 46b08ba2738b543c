"""The Windows runtime builder's dependency closure (scripts/windows-runtime.py), on Linux.

Host pip evaluates environment markers for Linux; the builder evaluates them for
Windows itself. These tests pin that down with a fake site-packages directory.
"""

from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "windows_runtime", ROOT / "scripts" / "windows-runtime.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def installed(site: Path, name: str, version: str, *requires: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = [f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n\nLong description: not a header\n")


def test_closure_follows_windows_markers_and_extras(builder: ModuleType, tmp_path: Path) -> None:
    env = builder.windows_environment("3.12.8")
    installed(
        tmp_path, "uvicorn", "0.30.0",
        "click>=7.0",
        "colorama>=0.4; sys_platform == 'win32' and extra == 'standard'",
        "uvloop>=0.15; sys_platform != 'win32' and extra == 'standard'",
        "httptools>=0.5; extra == 'standard'",
        "pytest; extra == 'test'",
    )  # fmt: skip
    installed(tmp_path, "click", "8.1.0", "colorama; platform_system == 'Windows'")
    roots = ["uvicorn[standard]>=0.29", "pywin32>=306; sys_platform == 'win32'"]
    missing = builder.missing_requirements(roots, tmp_path, env)
    assert sorted(missing) == ["colorama", "httptools", "pywin32"]
    # Two requirements on colorama: their specifiers are combined.
    assert str(missing["colorama"]) == ">=0.4"
    assert str(missing["pywin32"]) == ">=306"


def test_closure_done_when_everything_is_installed(builder: ModuleType, tmp_path: Path) -> None:
    installed(tmp_path, "httpx", "0.28.1", "idna")
    installed(tmp_path, "idna", "3.7")
    env = builder.windows_environment("3.12.8")
    assert builder.missing_requirements(["httpx>=0.27"], tmp_path, env) == {}


def test_installed_version_outside_a_specifier_fails(builder: ModuleType, tmp_path: Path) -> None:
    installed(tmp_path, "pydantic", "2.0.0")
    env = builder.windows_environment("3.12.8")
    with pytest.raises(SystemExit, match="does not satisfy"):
        builder.missing_requirements(["pydantic>=2.7"], tmp_path, env)


def test_a_zip_that_is_not_an_embeddable_cpython_is_refused(
    builder: ModuleType, tmp_path: Path
) -> None:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as z:
        z.writestr("python.exe", b"MZ")
        z.writestr("python311._pth", "python311.zip\n")
    with pytest.raises(SystemExit, match=r"3\.12"):
        builder.unpack_embeddable(data.getvalue(), tmp_path)


def test_wine_harness_paths_and_exports() -> None:
    from tests.windows.wine import _parse_exports, windows_path

    assert windows_path("/work/main/src") == r"Z:\work\main\src"
    exports = _parse_exports("export A=/tmp/x\\ y B=2\nnoise\nexport C=3\n")
    assert exports == {"A": "/tmp/x y", "B": "2", "C": "3"}
