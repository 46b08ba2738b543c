"""Preflight: the installed artifact's `version`, for real (release zips and scripts)."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from nodekeeper.updater.errors import PreflightFailed
from nodekeeper.updater.install import install_checked
from nodekeeper.updater.preflight import check_version_output, parse_version_output, preflight
from nodekeeper.updater.unpack import Installed, discard, unpack
from tests.artifacts import build_faulty, build_good

from .zips import make_zip, regular


def install_script(tmp_path: Path, script: str, version: str = "1.2.3") -> Installed:
    """Storj's format: a zip holding one executable named storagenode."""
    z = make_zip(
        tmp_path / "bare.zip", [(regular("storagenode", 0o755), script.encode())], manifest=None
    )
    return unpack(z, tmp_path / "versions", "storagenode", version)


def test_release_artifact_passes(tmp_path: Path) -> None:
    zip_path = build_good("1.2.3", tmp_path / "rel")
    installed = unpack(zip_path, tmp_path / "versions", "storagenode", "1.2.3")
    assert preflight(installed, "v1.2.3") == "1.2.3"


def test_broken_version_command_fails(tmp_path: Path) -> None:
    zip_path = build_faulty("broken_version", "1.2.3", tmp_path / "rel")
    installed = unpack(zip_path, tmp_path / "versions", "storagenode", "1.2.3")
    with pytest.raises(PreflightFailed, match="`storagenode version` exited with code 1") as e:
        preflight(installed, "1.2.3")
    assert e.value.kind == "preflight_failed"
    assert e.value.exit_code == 1
    assert "fixture: version is broken" in e.value.output


def test_bare_executable_printing_the_announced_version(tmp_path: Path) -> None:
    installed = install_script(tmp_path, "#!/bin/sh\necho 'storagenode'\necho 'Version: v1.2.3'\n")
    assert preflight(installed, "1.2.3") == "1.2.3"


def test_wrong_version_printed(tmp_path: Path) -> None:
    installed = install_script(tmp_path, "#!/bin/sh\necho 'Version: 1.2.4'\n")
    expected = r"says it is 1\.2\.4, but 1\.2\.3 was announced"
    with pytest.raises(PreflightFailed, match=expected) as e:
        preflight(installed, "1.2.3")
    assert e.value.exit_code == 0
    assert "Version: 1.2.4" in e.value.output


def test_no_version_line(tmp_path: Path) -> None:
    installed = install_script(tmp_path, "#!/bin/sh\necho hello\n")
    with pytest.raises(PreflightFailed, match="printed no `Version: X"):
        preflight(installed, "1.2.3")


def test_hanging_version_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    installed = install_script(
        tmp_path, f"#!/bin/sh\nsleep 300 &\necho $! > {pid_file}\nsleep 300\n"
    )
    started = time.monotonic()
    # 2 s: long enough for the shell to start its child even on a loaded machine.
    with pytest.raises(PreflightFailed, match="did not finish within 2 s"):
        preflight(installed, "1.2.3", timeout=2)
    assert time.monotonic() - started < 10
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the version command's child {child} survived the timeout")


def test_cannot_start(tmp_path: Path) -> None:
    installed = install_script(tmp_path, "#!/nonexistent/interpreter\n")
    with pytest.raises(PreflightFailed, match="cannot start the new version"):
        preflight(installed, "1.2.3")


def test_python_artifact_without_an_interpreter(tmp_path: Path) -> None:
    zip_path = build_good("1.2.3", tmp_path / "rel")
    installed = unpack(zip_path, tmp_path / "versions", "storagenode", "1.2.3")
    with pytest.raises(PreflightFailed, match="cannot start the new version"):
        preflight(installed, "1.2.3", python=str(tmp_path / "no-python"))


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Version: 1.2.3\n", "1.2.3"),
        ("Version: v1.2.3", "1.2.3"),
        ("  Version:   1.2.3-rc.1+build.5  \n", "1.2.3-rc.1+build.5"),
        ("Release build\nVersion: 1.2.3\nVersion: 9.9.9\n", "1.2.3"),
        ("version: 1.2.3", None),
        ("Version: banana", None),
        ("", None),
        ("Version: 1.2.3 extra", None),
    ],
)
def test_parse_version_output(output: str, expected: str | None) -> None:
    assert parse_version_output(output) == expected


def test_check_version_output_keeps_only_the_tail() -> None:
    with pytest.raises(PreflightFailed) as e:
        check_version_output("x" * 10_000 + "\nVersion: 2.0.0\n", "1.0.0")
    assert len(e.value.output) == 2000


def test_failed_preflight_is_discarded_and_a_newer_version_installs(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    broken = build_faulty("broken_version", "1.2.3", tmp_path / "bad")
    with pytest.raises(PreflightFailed):
        install_checked(broken, versions, "storagenode", "1.2.3")
    assert list((versions / "storagenode").iterdir()) == []  # nothing left to start
    good = build_good("1.2.4", tmp_path / "good")
    installed = install_checked(good, versions, "storagenode", "1.2.4")
    assert [p.name for p in (versions / "storagenode").iterdir()] == ["1.2.4"]
    assert (installed.path / "nodekeeper-artifact.json").exists()


def test_discard(tmp_path: Path) -> None:
    target = tmp_path / "versions" / "storagenode" / "1.2.3"
    (target / "sub").mkdir(parents=True)
    (target / "sub" / "f").write_text("x")
    assert discard(target)
    assert list(target.parent.iterdir()) == []
    assert discard(target)  # already gone
