"""TUF signing keys on disk (decision 084): ed25519 private keys in PKCS#8 PEM files.

Offline keys (root, targets) are written encrypted with cryptography's
``BestAvailableEncryption`` under a passphrase; the online keys (snapshot, timestamp),
which the server reads unattended, are written unencrypted. Both with mode 0600, each
beside its public key (``NAME.pub``, SubjectPublicKeyInfo PEM), which is not secret and
is what `keys sign-root --add` takes. The keys themselves come from securesystemslib's
``CryptoSigner``; nothing here signs or verifies by hand.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from securesystemslib.signer import CryptoSigner, SSlibKey

PASSPHRASE_ENV = "NODEKEEPER_KEY_PASSPHRASE"
ENCRYPTED_HEADER = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


class KeyFileError(Exception):
    """A key file that cannot be used; the message names the file and the fix."""


def generate() -> CryptoSigner:
    return CryptoSigner.generate_ed25519()


def keyid_prefix(keyid: str) -> str:
    """How keys are named in messages: the first 8 hex digits of the keyid."""
    return keyid[:8]


def _write_private(path: Path, data: bytes) -> None:
    """Create the file 0600 from the start (never world-readable, even for an instant);
    an existing file is not overwritten: a key lost that way cannot be recovered."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"{path} already exists; keys are never overwritten: choose another directory "
            "or move the old key away first"
        ) from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_key(signer: CryptoSigner, directory: Path, name: str, passphrase: bytes | None) -> Path:
    """``directory/NAME.pem`` (encrypted when ``passphrase``) and ``NAME.pub``."""
    private = signer._private_key
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    path = directory / f"{name}.pem"
    _write_private(path, pem)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (directory / f"{name}.pub").write_bytes(public)
    return path


def is_encrypted(path: Path) -> bool:
    try:
        return path.read_bytes().lstrip().startswith(ENCRYPTED_HEADER)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None


def load_signer(path: Path, passphrase: Callable[[Path], bytes] | None = None) -> CryptoSigner:
    """A signer from a private key file; ``passphrase(path)`` is asked only when the file
    is encrypted."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    password = None
    if pem.lstrip().startswith(ENCRYPTED_HEADER):
        if passphrase is None:
            raise KeyFileError(f"{path} is encrypted and no passphrase was given")
        password = passphrase(path)
    try:
        private = serialization.load_pem_private_key(pem, password)
    except (ValueError, TypeError) as exc:
        if password is not None:
            raise KeyFileError(
                f"cannot decrypt {path}: wrong passphrase (${PASSPHRASE_ENV} or the prompt)"
            ) from None
        raise KeyFileError(f"{path} is not a PEM private key: {exc}") from None
    try:
        return CryptoSigner(private)
    except ValueError as exc:
        raise KeyFileError(f"{path}: unsupported key ({exc}); nodekeeper uses ed25519") from None


def load_public(path: Path) -> SSlibKey:
    """A public key from ``NAME.pub`` (or from a private key file, unencrypted or with the
    passphrase from the environment/prompt)."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    if b"PRIVATE KEY" in pem:
        return load_signer(path, ask_passphrase).public_key
    try:
        return SSlibKey.from_crypto(serialization.load_pem_public_key(pem))
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a PEM public key: {exc}") from None


def ask_passphrase(path: Path) -> bytes:
    """The passphrase of an encrypted key: ${NODEKEEPER_KEY_PASSPHRASE}, else a prompt."""
    given = os.environ.get(PASSPHRASE_ENV)
    if given:
        return given.encode()
    if not sys.stdin.isatty():
        raise KeyFileError(
            f"{path} is encrypted: set {PASSPHRASE_ENV} or run in a terminal to be asked"
        )
    return getpass.getpass(f"passphrase for {path}: ").encode()


def new_passphrase() -> bytes:
    """The passphrase for new offline keys: ${NODEKEEPER_KEY_PASSPHRASE}, else asked twice."""
    given = os.environ.get(PASSPHRASE_ENV)
    if given is not None:
        if not given:
            raise KeyFileError(
                f"{PASSPHRASE_ENV} is empty; offline keys need a passphrase (or pass "
                "--no-passphrase, for tests only)"
            )
        return given.encode()
    if not sys.stdin.isatty():
        raise KeyFileError(
            f"offline keys are written encrypted: set {PASSPHRASE_ENV} or run in a terminal "
            "to be asked (--no-passphrase writes them unencrypted, for tests only)"
        )
    first = getpass.getpass("passphrase for the offline keys: ")
    if not first:
        raise KeyFileError("an empty passphrase; offline keys need one")
    if getpass.getpass("the same passphrase again: ") != first:
        raise KeyFileError("the two passphrases differ; nothing was written")
    return first.encode()


def load_online_signers(directory: Path) -> tuple[dict[str, CryptoSigner], list[str]]:
    """Every unencrypted private key in ``directory`` by keyid, and what was skipped (an
    encrypted or unreadable file) as messages. Read at each signing, so new online keys
    put there before a root rotation are used without a restart."""
    signers: dict[str, CryptoSigner] = {}
    skipped: list[str] = []
    try:
        paths = sorted(directory.glob("*.pem"))
    except OSError as exc:
        return {}, [f"cannot list {directory}: {exc.strerror}"]
    for path in paths:
        try:
            if is_encrypted(path):
                skipped.append(f"{path.name} is encrypted (online keys are read unattended)")
                continue
            signer = load_signer(path)
        except KeyFileError as exc:
            skipped.append(str(exc))
            continue
        signers[signer.public_key.keyid] = signer
    return signers, skipped
