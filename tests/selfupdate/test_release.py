"""The keeper's release builder: reproducible zips, the version baked in, a manifest the
keeper accepts, an install that passes the updater's own preflight."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nodekeeper import release
from nodekeeper.updater.errors import PreflightFailed
from nodekeeper.updater.install import install_checked
from nodekeeper.version.manifest import MANIFEST_NAME, manifest_for_zip
from tests.selfupdate.keepers import build_keeper


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_is_reproducible_and_bakes_the_version(tmp_path: Path) -> None:
    first = release.build_artifact("v2.3.4", tmp_path / "a")
    second = release.build_artifact("2.3.4", tmp_path / "b")
    assert first.name == second.name == "nodekeeper_2.3.4.zip"
    assert sha256(first) == sha256(second)
    other = release.build_artifact("2.3.5", tmp_path / "c")
    assert sha256(other) != sha256(first)
    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
        manifest = manifest_for_zip(names, zf.read(MANIFEST_NAME))
        init = zf.read("nodekeeper/__init__.py").decode()
    assert (manifest.process, manifest.version, manifest.run.module) == (  # type: ignore[union-attr]
        "nodekeeper",
        "2.3.4",
        "nodekeeper.selfupdate.entry",
    )
    assert '__version__ = "2.3.4"' in init
    assert "nodekeeper/launcher/run.py" in names and "nodekeeper/launched.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any(n.startswith("storagenode/") for n in names)


@pytest.mark.parametrize(
    "source",
    ['"""doc"""\n', '__version__ = "1"\n__version__ = "2"\n', "__version__ = '1.0.0'\n"],
)
def test_bake_version_needs_exactly_one_version_line(source: str) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        release.bake_version(source, "1.0.0")


def test_bake_version_replaces_only_the_version() -> None:
    source = '"""doc"""\n\n__version__ = "0.1.0"\nOTHER = 1\n'
    assert (
        release.bake_version(source, "v3.0.0") == '"""doc"""\n\n__version__ = "3.0.0"\nOTHER = 1\n'
    )


def test_cli_builds_and_refuses_a_bad_version(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "nodekeeper.release", "--out", str(tmp_path)]
    ok = subprocess.run([*run, "--version", "1.0.0"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.strip() == str(tmp_path / "nodekeeper_1.0.0.zip")
    bad = subprocess.run([*run, "--version", "one"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not a semantic version" in bad.stderr


@pytest.mark.timeout(60)
def test_installed_release_passes_the_updaters_preflight(tmp_path: Path) -> None:
    zip_path = release.build_artifact("4.5.6", tmp_path / "rel")
    installed = install_checked(zip_path, tmp_path / "versions", "nodekeeper", "4.5.6")
    assert installed.path == tmp_path / "versions" / "nodekeeper" / "4.5.6"
    # ... and the release's package wins over the runtime's copy when it runs.
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "import nodekeeper; print(nodekeeper.__file__, nodekeeper.__version__)",
            str(installed.path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.split() == [str(installed.path / "nodekeeper" / "__init__.py"), "4.5.6"]


@pytest.mark.timeout(60)
def test_a_release_that_cannot_say_its_version_fails_preflight(tmp_path: Path) -> None:
    zip_path = build_keeper("broken_version", "4.5.7", tmp_path / "rel")
    with pytest.raises(PreflightFailed):
        install_checked(zip_path, tmp_path / "versions", "nodekeeper", "4.5.7")
    assert not (tmp_path / "versions" / "nodekeeper" / "4.5.7").exists()
