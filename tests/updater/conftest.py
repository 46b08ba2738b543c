"""Fixtures for the updater tests: a controllable file server (plain and TLS), real
small and read-only file systems (tmpfs and read-only bind mounts, root only), release
zips built by the real release builder, and the ``lab`` of the end-to-end update tests
(a control plane, a keeper subprocess and a reference node; ``lab.py``)."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nodekeeper.version.schema import Artifact

from .httpserver import FileServer
from .lab import Lab

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client and the keeper honour proxy variables; a CI runner's proxy must not
    see loopback."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def files() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server


def artifact_for(url: str, data: bytes) -> Artifact:
    return Artifact(url=url, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


@dataclass
class Tls:
    cert: Path
    server: ssl.SSLContext


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1, made fresh for this run."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nodekeeper test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    cert_path, key_path = d / "cert.pem", d / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return Tls(cert_path, context)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs or a read-only bind mount needs root (CI runs as root)")


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _umount(path: Path) -> None:
    # -l: a test that failed with a file still open must not leave the mount behind.
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB tmpfs, unmounted afterwards even when the test fails."""
    _need_root()
    mnt = tmp_path / "small"
    mnt.mkdir()
    _mount("-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mnt))
    try:
        yield mnt
    finally:
        _umount(mnt)


@dataclass
class ReadOnlyDir:
    path: Path  # the read-only mount
    source: Path  # the same directory, writable, for setting up files beforehand

    def make_writable(self) -> None:
        _mount("-o", "remount,bind,rw", str(self.path))


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[ReadOnlyDir]:
    """A directory that is a read-only bind mount (EROFS on write, as a disk remounted
    read-only after errors gives); ``make_writable`` turns it back read-write."""
    _need_root()
    source = tmp_path / "ro-source"
    source.mkdir()
    mnt = tmp_path / "ro"
    mnt.mkdir()
    _mount("--bind", str(source), str(mnt))
    try:
        _mount("-o", "remount,bind,ro", str(mnt))
        yield ReadOnlyDir(mnt, source)
    finally:
        _umount(mnt)
