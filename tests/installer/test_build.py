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
    "python.exe", "pythonw.exe", "python312.dll", "Lib/site-packages/nodekeeper/__init__.py",
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
    with pytest.raises(build.BuildError, match=r"no pythonw\.exe, which the tray app"):
        build.runtime_files(tmp_path)
    (tmp_path / "pythonw.exe").write_bytes(b"MZ")
    assert build.runtime_files(tmp_path) == [
        PurePosixPath(p) for p in ("Lib/x.py", "python.exe", "pythonw.exe")
    ]


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
                      "CustomAction", "InstallExecuteSequence", "Upgrade", "Property", "Shortcut",
                      "Registry")
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
    rows = [row.split("\t") for row in a["Shortcut"].splitlines()]
    shortcuts = {row[2]: row for row in rows if len(row) > 5}
    # The tray app and the dashboard: pythonw.exe (no console) with the tray's arguments.
    tray, dashboard = shortcuts["nodekeeper"], shortcuts["nodekeeper dashboard"]
    assert tray[4:6] == ["[RUNTIMEDIR]pythonw.exe", "-m nodekeeper tray"], tray
    assert dashboard[4:6] == ["[RUNTIMEDIR]pythonw.exe", "-m nodekeeper tray --open-dashboard"]
    # At every user's logon: the machine's Run value, in the 64-bit registry view.
    run = [r.split("\t") for r in a["Registry"].splitlines() if "CurrentVersion\\Run" in r]
    assert len(run) == 1, a["Registry"]
    _id, root, key, name, value, component = run[0]
    assert (root, name, component) == ("2", "nodekeeper", "autostart")  # 2: HKLM
    assert key == "Software\\Microsoft\\Windows\\CurrentVersion\\Run"
    assert value == '"[RUNTIMEDIR]pythonw.exe" -m nodekeeper tray'
    component_row = [
        r.split("\t") for r in a["Component"].splitlines() if r.startswith("autostart\t")
    ]
    assert int(component_row[0][3]) & 256, component_row  # msidbComponentAttributes64bit


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


# -- the trusted root (decision 086) ---------------------------------------------------


def signed_root(tmp_path: Path) -> Path:
    from tests.windows.tuf_metadata import make_repository

    path = tmp_path / "root.json"
    path.write_bytes(make_repository(tmp_path / "metadata").root_v1)
    return path


def under_threshold_root(path: Path) -> Path:
    """A root that wants 2 of its keys and carries 1 signature: an unfinished signing."""
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata, Root

    one, two = CryptoSigner.generate_ed25519(), CryptoSigner.generate_ed25519()
    root = Metadata(Root())
    for signer in (one, two):
        root.signed.add_key(signer.public_key, "root")
    root.signed.roles["root"].threshold = 2
    root.sign(one)
    path.write_bytes(root.to_bytes())
    return path


def test_a_bad_trusted_root_fails_the_build_before_anything_is_built(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.windows.tuf_metadata import make_repository

    repo = make_repository(tmp_path / "metadata")
    (tmp_path / "garbage.json").write_text("{not json")
    cases = {
        tmp_path / "missing.json": "cannot read it",
        tmp_path / "garbage.json": "not TUF metadata",
        repo.metadata / "1.targets.json": "targets metadata, not a root",
        under_threshold_root(tmp_path / "half.json"): r"not signed by its own threshold \(",
    }
    runtime = fake_runtime(tmp_path)
    for path, said in cases.items():
        out = tmp_path / f"out-{path.stem}"
        argv = ["--runtime", str(runtime), "--out", str(out), "--trusted-root", str(path)]
        assert build.main(argv) == 1
        err = capsys.readouterr().err
        assert re.search(f"--trusted-root {re.escape(str(path))}: .*{said}", err), err
        assert not out.exists()  # checked before the slow part: nothing made


def test_the_root_is_a_component_beside_the_runtime_and_an_argument_of_the_install_action(
    tmp_path: Path,
) -> None:
    root = build.TrustedRoot("trusted-root.json", "ab" * 32, 1, "2027-01-01T00:00:00+00:00")
    other = build.TrustedRoot("trusted-root.json", "cd" * 32, 2, "2027-01-01T00:00:00+00:00")
    plain, shipped = build.render(FILES, "s", "1.2.3"), build.render(FILES, "s", "1.2.3", root)
    assert "trusted" not in plain  # without a root the MSI is what it was
    component = re.search(r'<Component Id="trusted_root".*?</Component>', shipped, re.S)
    assert component and 'Name="trusted-root.json" Source="trusted-root.json"' in component[0]
    # Under INSTALLDIR (Program Files\nodekeeper), not inside the runtime's tree.
    inside = shipped[shipped.index('Id="INSTALLDIR"') : shipped.index('Id="CommonAppDataFolder"')]
    runtime_tree = inside[inside.index('Id="RUNTIMEDIR"') : inside.index("</Directory>\n")]
    assert component[0] in inside and component[0] not in runtime_tree
    assert '<ComponentRef Id="trusted_root" />' in shipped
    assert "--trusted-root &quot;[INSTALLDIR]trusted-root.json &quot;" in shipped
    # Same product (the root is no version), another package for another root.
    codes = re.compile(r'Product Id="([^"]+)".*?Package Id="([^"]+)"', re.S)
    (p1, k1), (p2, k2) = codes.findall(plain)[0], codes.findall(shipped)[0]
    (p3, k3) = codes.findall(build.render(FILES, "s", "1.2.3", other))[0]
    assert p1 == p2 == p3 and len({k1, k2, k3}) == 3


@needs_wixl
def test_an_msi_with_a_trusted_root_is_reproducible_and_installs_it_read_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime, root = fake_runtime(tmp_path), signed_root(tmp_path)
    first = build.build(runtime, "1.2.3", tmp_path / "one", root)
    second = build.build(runtime, "1.2.3", tmp_path / "two", root)
    a = tables(first)
    assert a == tables(second)
    rows = [r.split("\t") for r in a["File"].splitlines() if r.startswith("trusted_root\t")]
    assert len(rows) == 1, a["File"]
    _id, component, name, size, _v, _l, attributes, _seq = rows[0]
    assert (component, name, int(size)) == (
        "trusted_root",
        "trusted-root.json",
        len(root.read_bytes()),
    )
    assert int(attributes) == build.READ_ONLY_VITAL  # wixl alone would leave it writable
    assert re.search(r"^trusted_root\t\{[0-9A-F-]+\}\tINSTALLDIR\t", a["Component"], re.M)
    configure = next(r for r in a["CustomAction"].splitlines() if r.startswith("Configure\t"))
    assert '--trusted-root "[INSTALLDIR]trusted-root.json "' in configure
    # What ships is the file as given: re-serialising would change what the keys signed.
    extracted = tmp_path / "extracted"
    subprocess.run(["msiextract", "-C", str(extracted), str(first)], check=True,
                   capture_output=True)  # fmt: skip
    (shipped,) = extracted.rglob("trusted-root.json")
    assert shipped.read_bytes() == root.read_bytes()
    # The build says what it ships, and when it ships none (stderr: stdout is the path).
    assert build.main(["--runtime", str(runtime), "--out", str(tmp_path / "3"),
                       "--trusted-root", str(root)]) == 0  # fmt: skip
    said = capsys.readouterr()
    assert "ships the trusted root" in said.err and "(version 1, expires 20" in said.err
    msi = tmp_path / "3" / f"nodekeeper-{build.project_version()}-x64.msi"
    assert said.out.strip() == str(msi)
    assert build.main(["--runtime", str(runtime), "--out", str(tmp_path / "4")]) == 0
    assert "this MSI ships no trusted root" in capsys.readouterr().err
