"""The keeper's artifact format (nodekeeper.version.manifest)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nodekeeper.version.manifest import (
    MANIFEST_NAME,
    PYTHON_BOOTSTRAP,
    ArtifactManifest,
    ExecutableRun,
    InvalidArtifactError,
    PythonRun,
    check_member_name,
    manifest_for_zip,
    parse_manifest,
    render_manifest,
    run_argv,
)


def _doc(**changes: object) -> bytes:
    doc: dict[str, object] = {
        "format": 1,
        "process": "storagenode",
        "version": "v1.2.3",
        "run": {"kind": "python", "module": "storagenode"},
    }
    doc.update(changes)
    return json.dumps(doc).encode()


def test_parse_python_manifest_normalizes_version_and_ignores_unknown_keys() -> None:
    manifest = parse_manifest(_doc(future_key={"x": 1}))
    assert manifest == ArtifactManifest("storagenode", "1.2.3", PythonRun("storagenode"))


def test_parse_executable_manifest() -> None:
    manifest = parse_manifest(_doc(run={"kind": "executable", "path": "bin/./storagenode"}))
    assert manifest.run == ExecutableRun("bin/storagenode")


def test_render_parse_round_trip() -> None:
    for run in (PythonRun("storagenode"), ExecutableRun("bin/node.exe")):
        manifest = ArtifactManifest("storagenode", "2.0.0-rc.1", run)
        assert parse_manifest(render_manifest(manifest)) == manifest


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"not json", "not JSON"),
        (b"[]", "object"),
        (_doc(format=2), "update it"),
        (_doc(format=0), "format"),
        (_doc(format=True), "format"),
        (_doc(process="Storage Node"), "process"),
        (_doc(version="one"), "semantic version"),
        (_doc(version=None), "version"),
        (_doc(run=None), "run"),
        (_doc(run={"kind": "docker"}), "unknown"),
        (_doc(run={"kind": "python", "module": "a-b"}), "module"),
        (_doc(run={"kind": "executable", "path": "../evil"}), "outside"),
        (_doc(run={"kind": "executable", "path": "/bin/sh"}), "outside"),
        (_doc(run={"kind": "executable", "path": "C:/x.exe"}), "outside"),
        (_doc(run={"kind": "executable"}), "path"),
    ],
)
def test_parse_manifest_refuses(data: bytes, needle: str) -> None:
    with pytest.raises(InvalidArtifactError, match=needle):
        parse_manifest(data)


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "C:\\w\\x", "a\\..\\..\\x"])
def test_member_names_cannot_escape(name: str) -> None:
    with pytest.raises(InvalidArtifactError):
        check_member_name(name)


def test_zip_with_manifest_must_contain_what_it_runs() -> None:
    names = [MANIFEST_NAME, "storagenode/__init__.py", "storagenode/__main__.py"]
    assert manifest_for_zip(names, _doc()).version == "1.2.3"
    with pytest.raises(InvalidArtifactError, match="not in the zip"):
        manifest_for_zip([MANIFEST_NAME, "other/__init__.py"], _doc())
    exe = _doc(run={"kind": "executable", "path": "bin/storagenode"})
    with pytest.raises(InvalidArtifactError, match="not in the zip"):
        manifest_for_zip([MANIFEST_NAME, "storagenode"], exe)
    with pytest.raises(InvalidArtifactError, match="pass its content"):
        manifest_for_zip(names, None)


@pytest.mark.parametrize(
    ("names", "process", "path"),
    [
        (["storagenode.exe"], "storagenode", "storagenode.exe"),
        (["storagenode"], "storagenode", "storagenode"),
        (["dist/", "dist/storagenode"], "storagenode", "dist/storagenode"),
    ],
)
def test_bare_executable_zip(names: list[str], process: str, path: str) -> None:
    manifest = manifest_for_zip(names, None)
    assert manifest == ArtifactManifest(process, None, ExecutableRun(path))


@pytest.mark.parametrize("names", [[], ["a.exe", "b.exe"], ["README.txt"], ["../storagenode"]])
def test_bare_zip_refusals(names: list[str]) -> None:
    with pytest.raises(InvalidArtifactError):
        manifest_for_zip(names, None)


def test_run_argv_executable() -> None:
    manifest = ArtifactManifest("storagenode", None, ExecutableRun("bin/storagenode.exe"))
    assert run_argv(manifest, "C:\\nk\\v1\\", "py", ["version"], sep="\\") == [
        "C:\\nk\\v1\\bin\\storagenode.exe",
        "version",
    ]
    posix = run_argv(manifest, "/opt/v1", "py", ["run"], sep="/")
    assert posix == ["/opt/v1/bin/storagenode.exe", "run"]


def test_run_argv_python_runs_the_install_dir_first(tmp_path) -> None:
    # A module that exists only in the install dir, run with arguments and an exit code.
    (tmp_path / "only_here").mkdir()
    (tmp_path / "only_here" / "__main__.py").write_text(
        "import sys\nprint('args', sys.argv[1:])\nsys.exit(7)\n"
    )
    manifest = ArtifactManifest("only_here", "1.0.0", PythonRun("only_here"))
    argv = run_argv(manifest, str(tmp_path), sys.executable, ["run", "--x", "y z"])
    assert argv[:4] == [sys.executable, "-I", "-c", PYTHON_BOOTSTRAP]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 7, result.stderr
    assert result.stdout.strip() == "args ['run', '--x', 'y z']"
