"""installer/build.py: the WiX text it renders (pure, in-process), and one real build with
wixl whose tables msiinfo reads back (the same tables twice: a reproducible build)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("installer_build", ROOT / "installer" / "build.py")
assert spec and spec.loader
build = importlib.util.module_from_spec(spec)
sys.modules["installer_build"] = build
spec.loader.exec_module(build)

FILES = [PurePosixPath(p) for p in (
    "python.exe", "python312.dll", "Lib/site-packages/nodekeeper/__init__.py",
    "Lib/site-packages/nodekeeper/cli/root.py", "Lib/site-packages/a b/c.txt",
)]  # fmt: skip


def test_render_is_the_same_for_the_same_tree_and_names_every_file_once() -> None:
    first = build.render(FILES, "source", "1.2.3")
    assert first == build.render(list(reversed(FILES)), "source", "1.2.3")
    sources = re.findall(r'Source="source/([^"]+)"', first)
    assert sorted(sources) == sorted(map(str, FILES))
    ids = re.findall(r'<(?:File|Component|Directory) Id="([^"]+)"', first)
    assert len(ids) == len(set(ids)) and all(len(i) <= 72 for i in ids)


def test_the_product_code_changes_with_the_version_and_the_upgrade_code_never() -> None:
    one, two = build.render(FILES, "s", "1.2.3"), build.render(FILES, "s", "1.2.4")
    code = re.compile(r'Product Id="([^"]+)".*?UpgradeCode="([^"]+)"', re.S)
    (p1, u1), (p2, u2) = code.findall(one)[0], code.findall(two)[0]
    assert p1 != p2 and u1 == u2 == build.UPGRADE_CODE


def test_python_exe_carries_the_service_with_its_dependencies() -> None:
    text = build.render(FILES, "s", "1.0.0")
    component = re.search(r'<Component Id="service".*?</Component>', text, re.S)
    assert component is not None
    body = component.group(0)
    assert 'Name="python.exe"' in body and 'Start="auto"' in body
    assert (
        '<ServiceDependency Id="Tcpip" />' in body and '<ServiceDependency Id="Dnscache" />' in body
    )
    assert 'Start="install" Stop="both" Remove="uninstall" Wait="yes"' in body


@pytest.mark.parametrize("version", ["1.2", "1.2.3-rc.1", "256.0.0", "1.2.65536"])
def test_a_version_msi_cannot_carry_is_refused(version: str) -> None:
    with pytest.raises(build.BuildError, match=r"X\.Y\.Z"):
        build.msi_version(version)


def test_the_runtime_must_have_python_exe_and_leaves_wmi_out(tmp_path: Path) -> None:
    (tmp_path / "Lib").mkdir()
    (tmp_path / "Lib" / "x.py").write_text("")
    with pytest.raises(build.BuildError, match=r"no python\.exe"):
        build.runtime_files(tmp_path)
    for name in ("python.exe", "_wmi.pyd"):
        (tmp_path / name).write_bytes(b"MZ")
    assert build.runtime_files(tmp_path) == [PurePosixPath("Lib/x.py"), PurePosixPath("python.exe")]


needs_wixl = pytest.mark.skipif(
    shutil.which("wixl") is None or shutil.which("msiinfo") is None,
    reason="wixl/msitools not installed: run make system-packages",
)


def fake_runtime(root: Path) -> Path:
    runtime = root / "runtime"
    for file in FILES:
        (runtime / file).parent.mkdir(parents=True, exist_ok=True)
        (runtime / file).write_bytes(f"content of {file}".encode())
    return runtime


def tables(msi: Path) -> dict[str, str]:
    """The tables as msiinfo exports them, rows sorted: an MSI table is a set of rows, and
    wixl writes InstallExecuteSequence's in no fixed order."""
    return {
        table: "\n".join(sorted(subprocess.run(["msiinfo", "export", str(msi), table],
                          capture_output=True, text=True, check=True).stdout.splitlines()))
        for table in ("File", "Component", "Directory", "ServiceInstall", "ServiceControl",
                      "CustomAction", "InstallExecuteSequence", "Upgrade", "Property", "Shortcut")
    }  # fmt: skip


@needs_wixl
def test_two_builds_of_the_same_tree_give_the_same_tables(tmp_path: Path) -> None:
    runtime = fake_runtime(tmp_path)
    first = build.build(runtime, "1.2.3", tmp_path / "one")
    second = build.build(runtime, "1.2.3", tmp_path / "two")
    assert first.name == "nodekeeper-1.2.3-x64.msi"
    a, b = tables(first), tables(second)
    assert a == b
    assert len(a["File"].splitlines()) == 3 + len(FILES)  # three header lines
    assert "nodekeeper\tnodekeeper\t16\t2" in a["ServiceInstall"]  # own process, auto start
    assert "Tcpip[~]Dnscache[~][~]" in a["ServiceInstall"]
    for action in ("SetPythonExe", "Configure", "Unconfigure"):
        assert re.search(rf"^{action}\t", a["CustomAction"], re.M), a["CustomAction"]
    sequence = a["InstallExecuteSequence"]
    assert "Configure\tNOT REMOVE\t5850" in sequence  # after InstallServices, before start
    assert "AND NOT UPGRADINGPRODUCTCODE\t3450" in sequence  # after DeleteServices
    assert build.UPGRADE_CODE in a["Upgrade"]
    secure = re.search(r"^SecureCustomProperties\t(.*)$", a["Property"], re.M)
    assert secure and {"STORAGE_DIR", "WALLET", "REMOVE_DATA"} <= set(secure.group(1).split(";"))
    assert "\tmenu\t[DATADIR]logs\t" in a["Shortcut"]  # the Start menu: the logs folder


@needs_wixl
def test_a_wixl_complaint_fails_the_build(tmp_path: Path) -> None:
    """wixl exits 0 with an incomplete MSI on some mistakes, saying only CRITICAL: the
    build must not."""
    wxs = tmp_path / "broken.wxs"
    wxs.write_text(
        '<?xml version="1.0"?><Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">'
        '<Product Id="*" Name="x" Language="1033" Version="1.0.0" Manufacturer="x" '
        'UpgradeCode="6F1B7C2E-3D4A-4E5B-9C8D-2A1F0E3B4C5E"><Package Compressed="yes"/>'
        '<Media Id="1" Cabinet="x.cab" EmbedCab="yes"/><Directory Id="TARGETDIR" Name="SourceDir">'
        '<Directory Id="D" Name="d"><Component Id="C" Guid="*"><File Id="F" Source="/abs/no.txt"/>'
        "</Component></Directory></Directory></Product></Wix>"
    )
    with pytest.raises(build.BuildError, match=r"CRITICAL|ERROR|wixl failed"):
        build.run_wixl(wxs, tmp_path / "out.msi")
    assert not (tmp_path / "out.msi").exists()
