#!/usr/bin/env python3
"""Builds the nodekeeper MSI on Linux: `make msi`, or

    installer/build.py [--runtime DIR] [--version X.Y.Z] [--out dist/] [--trusted-root FILE]

1. The release runtime: the embeddable CPython plus our wheel (scripts/windows-runtime.py
   --out), unless ``--runtime`` gives one already built.
2. The WiX source: installer/nodekeeper.wxs with the runtime's directory tree filled in,
   one component per directory, every id and GUID derived from the file's path (and the
   product and package codes from the version), so two builds of the same tree give the
   same tables.
   With ``--trusted-root`` the MSI also carries the control plane's TUF root
   (``Program Files\\nodekeeper\\trusted-root.json``, decision 086), checked here first:
   a root that does not load or is not signed by its own threshold fails the build.
3. wixl -a x64. wixl reports some mistakes only as a CRITICAL or ERROR line and still
   exits 0 with an incomplete MSI (a custom action silently dropped, for one), so any
   such line fails the build.

The pure part (``render``) takes a file list and returns the WiX text; tests call it
directly and run the whole build once.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from string import Template
from xml.sax.saxutils import quoteattr

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "nodekeeper.wxs"
# Never change: Windows finds the installed product to upgrade by this code.
UPGRADE_CODE = "6F1B7C2E-3D4A-4E5B-9C8D-2A1F0E3B4C5D"
# The namespace of every GUID derived here (components, product and package codes).
NAMESPACE = uuid.UUID("0b8a4c1e-7d2f-4c6a-9e3b-5f1d2c8a7b6e")
SERVICE_NAME = "nodekeeper"  # nodekeeper.service.windows_config.SERVICE_NAME
SERVICE_EXE = PurePosixPath("python.exe")
TRAY_EXE = PurePosixPath("pythonw.exe")  # the tray app: a desktop program, no console
# Windows services the keeper needs running first: the network stack and DNS (Storj
# added Dnscache after nodes failed to resolve their satellites at boot).
SERVICE_DEPENDENCIES = ("Tcpip", "Dnscache")
# The control plane's TUF root (decision 086): beside the runtime, under Program Files (whose
# ACL lets users read, not write), named by the keeper.toml the install action writes.
TRUSTED_ROOT_NAME = "trusted-root.json"
BAD_LINE = re.compile(r"\b(CRITICAL|ERROR)\b")
# Public properties a UAC-elevated install must pass from the client to the deferred
# actions (Windows Installer drops any not listed); wixl lists only its own.
SECURE_PROPERTIES = (
    "STORAGE_DIR", "ALLOCATION", "WALLET", "EMAIL", "ADDRESS", "PORT", "IDENTITY_DIR",
    "SERVER_URL", "KEEPER_STATUS", "CONTROL_PORT", "REMOVE_DATA",
    "WIX_DOWNGRADE_DETECTED", "WIX_UPGRADE_DETECTED",
)  # fmt: skip


class BuildError(Exception):
    pass


@dataclass
class Directory:
    path: PurePosixPath  # relative to the runtime
    files: list[PurePosixPath] = field(default_factory=list)
    children: dict[str, Directory] = field(default_factory=dict)


def guid(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts))).upper()


def ident(prefix: str, path: PurePosixPath) -> str:
    """A WiX id for a path: stable, unique, within MSI's 72-character limit."""
    return f"{prefix}_{hashlib.sha1(str(path).encode()).hexdigest()[:24]}"


def tree(files: Iterable[PurePosixPath]) -> Directory:
    root = Directory(PurePosixPath("."))
    for file in sorted(files):
        node = root
        for part in file.parts[:-1]:
            node = node.children.setdefault(part, Directory(node.path / part))
        node.files.append(file)
    return root


def render(
    files: Iterable[PurePosixPath],
    source: str,
    version: str,
    trusted_root: TrustedRoot | None = None,
) -> str:
    """The WiX text for a runtime whose files (relative paths) are under ``source`` as
    wixl will see it; with ``trusted_root``, its file (``trusted_root.source``, relative to
    the .wxs) installed beside the runtime and named to the install action."""
    root = tree(files)
    components: list[str] = []
    lines: list[str] = []

    def emit(node: Directory, depth: int) -> None:
        pad = "  " * depth
        plain = [f for f in node.files if f != SERVICE_EXE]
        if plain:
            cid = ident("c", node.path)
            components.append(cid)
            lines.append(
                f'{pad}<Component Id="{cid}" Guid="{guid("component", str(node.path))}" '
                'Win64="yes">'
            )
            for n, file in enumerate(plain):
                key = ' KeyPath="yes"' if n == 0 else ""
                lines.append(
                    f'{pad}  <File Id="{ident("f", file)}" Name={quoteattr(file.name)} '
                    f"Source={quoteattr(f'{source}/{file}')}{key} />"
                )
            lines.append(f"{pad}</Component>")
        if SERVICE_EXE in node.files:
            components.append("service")
            lines.extend(_service_component(pad, source))
        for name in sorted(node.children):
            child = node.children[name]
            lines.append(f'{pad}<Directory Id="{ident("d", child.path)}" Name={quoteattr(name)}>')
            emit(child, depth + 1)
            lines.append(f"{pad}</Directory>")

    lines.append('          <Directory Id="RUNTIMEDIR" Name="runtime">')
    emit(root, 6)
    lines.append("          </Directory>")
    listing = "\n".join(map(str, sorted(files)))
    if trusted_root is not None:
        # Two MSIs of one version that ship different roots are different packages.
        listing += f"\n{TRUSTED_ROOT_NAME} {trusted_root.sha256}"
        components.append("trusted_root")
    files_key = hashlib.sha256(listing.encode()).hexdigest()
    fields = {
        "version": version,
        "product_code": guid("product", version),
        "package_code": guid("package", version, files_key),
        "upgrade_code": UPGRADE_CODE,
        "menu_guid": guid("component", "start-menu"),
        "autostart_guid": guid("component", "autostart"),
        "runtime_tree": "\n".join(lines),
        "component_refs": "\n".join(f'      <ComponentRef Id="{c}" />' for c in components),
        "trusted_root_tree": _trusted_root_component(trusted_root) if trusted_root else "",
        # The install action points keeper.toml at it (`[update] trusted_root`).
        "trusted_root_arg": (
            f" --trusted-root &quot;[INSTALLDIR]{TRUSTED_ROOT_NAME} &quot;" if trusted_root else ""
        ),
    }
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(fields)


def _service_component(pad: str, source: str) -> list[str]:
    """python.exe in its own component, with the service it runs: the service is
    installed and removed with the program that runs it."""
    arguments = '-m nodekeeper.service.windows_host --config "[DATADIR]keeper.toml"'
    deps = [f'{pad}    <ServiceDependency Id="{d}" />' for d in SERVICE_DEPENDENCIES]
    return [
        f'{pad}<Component Id="service" Guid="{guid("component", "service")}" Win64="yes">',
        f'{pad}  <File Id="python_exe" Name="python.exe" '
        f'Source={quoteattr(f"{source}/{SERVICE_EXE}")} KeyPath="yes" />',
        f'{pad}  <ServiceInstall Id="service_install" Name="{SERVICE_NAME}" '
        f'DisplayName="{SERVICE_NAME}" Type="ownProcess" Start="auto" ErrorControl="normal" '
        f'Account="LocalSystem" Vital="yes" Arguments={quoteattr(arguments)} '
        'Description="Keeps the storage node running, updated and within its limits.">',
        *deps,
        f"{pad}  </ServiceInstall>",
        f'{pad}  <ServiceControl Id="service_control" Name="{SERVICE_NAME}" Start="install" '
        'Stop="both" Remove="uninstall" Wait="yes" />',
        f"{pad}</Component>",
    ]


@dataclass(frozen=True)
class TrustedRoot:
    """A checked TUF root: where wixl finds its file, and what it is."""

    source: str  # relative to the .wxs
    sha256: str
    version: int
    expires: str


def _trusted_root_component(root: TrustedRoot) -> str:
    """The root's file in a component of its own, read-only (the file attribute, which
    wixl drops: ``read_only_root`` sets it after the build; Program Files' ACL is what
    keeps users from replacing it). Its GUID is fixed: the same component in every
    version, so an upgrade replaces the file."""
    pad = " " * 10
    return "\n".join([
        f'{pad}<Component Id="trusted_root" Guid="{guid("component", TRUSTED_ROOT_NAME)}" '
        'Win64="yes">',
        f'{pad}  <File Id="trusted_root" Name="{TRUSTED_ROOT_NAME}" '
        f'Source={quoteattr(root.source)} ReadOnly="yes" KeyPath="yes" />',
        f"{pad}</Component>",
    ])  # fmt: skip


def check_trusted_root(path: Path) -> tuple[int, str, bytes]:
    """The file's bytes if it is a TUF root signed by its own threshold of its own root
    keys, with its version and expiry; BuildError saying what is wrong otherwise. The
    bytes are shipped as they are: re-serialising would change what the keys signed."""
    from tuf.api.exceptions import UnsignedMetadataError
    from tuf.api.metadata import Metadata, Root

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BuildError(f"--trusted-root {path}: cannot read it ({exc.strerror})") from None
    hint = "give the root.json the control plane's `nodekeeper keys` made (decision 084)"
    try:
        metadata = Metadata.from_bytes(data)
    except Exception as exc:  # tuf's DeserializationError, or a role it does not know
        raise BuildError(f"--trusted-root {path}: not TUF metadata ({exc}); {hint}") from None
    signed = metadata.signed
    if not isinstance(signed, Root):
        raise BuildError(f"--trusted-root {path}: {signed.type} metadata, not a root; {hint}")
    try:
        signed.verify_delegate(Root.type, metadata.signed_bytes, metadata.signatures)
    except UnsignedMetadataError as exc:
        raise BuildError(
            f"--trusted-root {path}: root version {signed.version} is not signed by its own "
            f"threshold ({exc}); sign it with enough of its root keys first"
        ) from None
    return signed.version, signed.expires.isoformat(), data


# Left out of the MSI: CPython 3.12's platform module asks WMI through _wmi.pyd, which
# calls propsys!VariantToString, unimplemented in Wine 8: the keeper died at start there.
# Without it CPython reads the same facts from the registry; what ships is what is tested.
LEFT_OUT = frozenset({PurePosixPath("_wmi.pyd")})


def runtime_files(runtime: Path) -> list[PurePosixPath]:
    found = [
        path
        for path in (PurePosixPath(p.relative_to(runtime).as_posix()) for p in runtime.rglob("*"))
        if path not in LEFT_OUT and (runtime / path).is_file()
    ]
    if SERVICE_EXE not in found:
        raise BuildError(f"{runtime} is not a Windows runtime: no python.exe in it")
    if TRAY_EXE not in found:
        raise BuildError(
            f"{runtime} has no pythonw.exe, which the tray app's Start menu entries and its "
            "start at logon run: build the runtime from an embeddable CPython zip that has it"
        )
    return sorted(found)


def project_version() -> str:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return str(data["project"]["version"])


def msi_version(version: str) -> str:
    """MSI wants major.minor.build, each a number (255.255.65535 at most)."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    if not match or int(match[1]) > 255 or int(match[2]) > 255 or int(match[3]) > 65535:
        raise BuildError(f"version {version!r}: an MSI needs X.Y.Z with X,Y <= 255, Z <= 65535")
    return version


def build_runtime(out: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "windows-runtime.py"), "--out", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def run_wixl(wxs: Path, output: Path) -> str:
    if shutil.which("wixl") is None:
        raise BuildError("wixl not found: run `make system-packages` (Debian package wixl)")
    done = subprocess.run(
        ["wixl", "-a", "x64", "-o", str(output), str(wxs)],
        capture_output=True,
        text=True,
    )
    said = (done.stdout + done.stderr).strip()
    bad = [line for line in said.splitlines() if BAD_LINE.search(line)]
    if done.returncode != 0 or bad:
        output.unlink(missing_ok=True)
        raise BuildError(f"wixl failed (exit {done.returncode}):\n" + "\n".join(bad or [said]))
    return said


def build(
    runtime: Path | None, version: str, out_dir: Path, trusted_root: Path | None = None
) -> Path:
    version = msi_version(version)
    # Checked before the slow part: a bad root fails the build at once.
    checked = check_trusted_root(trusted_root) if trusted_root is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nodekeeper-msi-") as work:
        shipped = None
        if checked is not None:
            root_version, expires, data = checked
            (Path(work) / TRUSTED_ROOT_NAME).write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
            shipped = TrustedRoot(TRUSTED_ROOT_NAME, digest, root_version, expires)
        if runtime is None:
            runtime = Path(work) / "runtime"
            build_runtime(runtime)
        # wixl takes only sources relative to the .wxs (an absolute one fails a GLib
        # assertion): the runtime is linked in beside it.
        wxs = Path(work) / "nodekeeper.wxs"
        link = Path(work) / "source"
        link.symlink_to(runtime.resolve(), target_is_directory=True)
        text = render(runtime_files(runtime), "source", version, shipped)
        wxs.write_text(text, encoding="utf-8")
        output = out_dir / f"nodekeeper-{version}-x64.msi"
        run_wixl(wxs, output)
        secure_properties(output)
        if shipped is not None:
            read_only_root(output)
    return output


def secure_properties(msi: Path) -> None:
    value = ";".join(SECURE_PROPERTIES)
    query = f"UPDATE `Property` SET `Value` = '{value}' WHERE `Property` = 'SecureCustomProperties'"
    _msibuild(msi, query, "could not list the secure properties")


# msidbFileAttributesReadOnly | msidbFileAttributesVital: wixl ignores File/@ReadOnly.
READ_ONLY_VITAL = 1 | 512


def read_only_root(msi: Path) -> None:
    """The trusted root's file attribute: read-only, so that no editor saves over it by
    accident (who may replace it is Program Files' ACL: administrators only)."""
    query = f"UPDATE `File` SET `Attributes` = {READ_ONLY_VITAL} WHERE `File` = 'trusted_root'"
    _msibuild(msi, query, "could not make the trusted root read-only")


def _msibuild(msi: Path, query: str, what: str) -> None:
    done = subprocess.run(["msibuild", str(msi), "-q", query], capture_output=True, text=True)
    if done.returncode != 0 or BAD_LINE.search(done.stderr):
        msi.unlink(missing_ok=True)
        raise BuildError(f"msibuild {what}: {done.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="installer/build.py", description=__doc__.split("\n")[0])
    parser.add_argument("--runtime", type=Path, help="a release runtime already built")
    parser.add_argument("--version", default=None, help="default: pyproject.toml's")
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument(
        "--trusted-root",
        type=Path,
        help="the control plane's TUF root.json: installed under Program Files, and the "
        "keeper verifies every download against it (decision 086)",
    )
    args = parser.parse_args(argv)
    try:
        output = build(args.runtime, args.version or project_version(), args.out, args.trusted_root)
    except (BuildError, subprocess.CalledProcessError) as exc:
        print(f"installer/build.py: error: {exc}", file=sys.stderr)
        return 1
    print(shipped_note(args.trusted_root), file=sys.stderr)
    print(output)
    return 0


def shipped_note(trusted_root: Path | None) -> str:
    """What the build says about the root on stderr (stdout is the MSI's path alone)."""
    if trusted_root is None:
        return (
            "installer/build.py: this MSI ships no trusted root: the keepers it installs verify "
            "no signatures (their status warns). Give one with --trusted-root FILE "
            "(make msi TRUSTED_ROOT=FILE)."
        )
    version, expires, _ = check_trusted_root(trusted_root)
    note = f"installer/build.py: this MSI ships the trusted root {trusted_root} (version {version}"
    if datetime.fromisoformat(expires) <= datetime.now(UTC):
        # Accepted: a keeper walks from it to the control plane's newer roots; but with
        # none newer there, every refresh fails until one is published.
        return f"{note}, EXPIRED {expires}: publish a newer root before installing it)"
    return f"{note}, expires {expires})"


if __name__ == "__main__":
    sys.exit(main())
