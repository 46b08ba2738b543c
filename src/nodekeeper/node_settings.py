"""The operator's settings for a storage node, each checked by one function.

`storagenode setup`, the node's config loader, the MSI's custom action and the tray
wizard all call these, so a value one of them accepts the others accept too (decision
067). Each ``check_*`` returns the normalised value or raises :class:`InvalidSetting`,
whose ``field`` names the setting (one of :data:`FIELDS`) and whose message says what is
wrong and how to fix it, in words an operator reads next to the field or in the
installer's log.

The checks are pure except where the question is about the disk (free space, a folder
that can be written, the identity file present and readable). Nothing here creates,
changes or keeps a file: the writability probe is a temporary file, removed at once.
Whether a host name resolves is a separate question (:func:`resolves`): an installer
must not fail because the machine is offline at install time.

Light on purpose: ``storagenode`` imports this on the start path of every command, so
cryptography (the identity) and pycryptodome (Keccak-256) are imported only where used.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

from nodekeeper.units import InvalidSizeError, format_size, parse_size

# The file `storagenode setup` writes and the node and keeper read (nodekeeper.identity,
# storagenode.config): an ed25519 private key, PKCS#8 PEM. It is the whole identity.
IDENTITY_FILE = "identity.key"

# Room left beside the allocation for the database, temp files of uploads in flight and
# file-system overhead (Storj's guidance is 10%): free space must be allocation + 10%.
MARGIN_PERCENT = 10

# The names InvalidSetting.field takes, one per setting (the MSI maps them to properties,
# the wizard to its fields, `storagenode setup` to its flags).
FIELDS = (
    "wallet",
    "email",
    "external_address",
    "port",
    "server_url",
    "identity_dir",
    "storage_dir",
    "allocation",
)


class InvalidSetting(ValueError):
    """A setting that cannot be used; ``field`` names it, the message says how to fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# -- wallet -------------------------------------------------------------------------------

_HEX40 = re.compile(r"[0-9a-fA-F]{40}")


def _keccak256_hex(data: bytes) -> str:
    # Ethereum's Keccak-256, NOT hashlib.sha3_256: FIPS 202 changed the padding, so the
    # two give different digests for the same input.
    from Crypto.Hash import keccak

    return keccak.new(data=data, digest_bits=256).hexdigest()


def checksum_address(hex40: str) -> str:
    """The EIP-55 form of a 40-hex-digit address (with or without ``0x``): each letter is
    upper case where the same position of Keccak-256(lowercase hex) is 8 or more."""
    lower = hex40.lower().removeprefix("0x")
    if not _HEX40.fullmatch(lower):
        raise ValueError(f"{hex40!r} is not 40 hex digits")
    digest = _keccak256_hex(lower.encode("ascii"))
    pairs = zip(lower, digest[:40], strict=True)
    return "0x" + "".join(c.upper() if c.isalpha() and int(h, 16) >= 8 else c for c, h in pairs)


def check_wallet(text: str) -> str:
    """``0x`` + 40 hex digits. All lower or all upper case is taken as it is (no checksum
    to check); mixed case must be the EIP-55 checksum, which catches a mistyped digit."""
    value = text.strip() if isinstance(text, str) else ""
    how = "paste the address your wallet shows, e.g. 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    if not value:
        raise InvalidSetting("wallet", f"the wallet address is empty: {how}")
    if value[:2] != "0x":
        raise InvalidSetting(
            "wallet", f"the wallet address {value!r} must start with 0x (zero, small x): {how}"
        )
    digits = value[2:]
    if not _HEX40.fullmatch(digits):
        if len(digits) != 40:
            what = f"has {len(digits)} characters after 0x instead of 40"
        else:
            bad = sorted({c for c in digits if c not in "0123456789abcdefABCDEF"})
            what = f"has characters that are not hex digits ({''.join(bad)!r})"
        raise InvalidSetting("wallet", f"the wallet address {value!r} {what}: {how}")
    if digits in (digits.lower(), digits.upper()):
        return value
    expected = checksum_address(digits)
    if value != expected:
        raise InvalidSetting(
            "wallet",
            f"the wallet address {value!r} mixes upper and lower case but does not match "
            "its EIP-55 checksum, so a character is probably mistyped: copy the address "
            "again from your wallet. If only the case of a letter is off, the checksummed "
            f"form is {expected}; if a digit or letter is wrong, that form is wrong too.",
        )
    return value


# -- email --------------------------------------------------------------------------------

# A sanity check, not RFC 5322: the RFC's grammar (quoted local parts, comments, IP
# literals) accepts strings no mail provider hands out and catches none of the typos that
# matter (a wrong but well-formed domain). Only a mail that arrives proves an address; this
# refuses what is surely not one: no @, two @, spaces, no dot in the domain, a pasted
# "Name <addr>" or a list.
_EMAIL = re.compile(r"[^\s@]+@(?:[^\s@.]+\.)+[^\s@.]{2,}")


def check_email(text: str) -> str:
    value = text.strip() if isinstance(text, str) else ""
    example = "write it as name@example.com"
    if not value:
        raise InvalidSetting("email", f"the email address is empty: {example}")
    if any(c.isspace() for c in value):
        raise InvalidSetting(
            "email", f"the email address {value!r} has a space in it: {example}, one address"
        )
    if value.count("@") != 1:
        raise InvalidSetting(
            "email", f"the email address {value!r} needs exactly one @: {example}, one address"
        )
    if len(value) > 254 or not value.isprintable() or not _EMAIL.fullmatch(value):
        raise InvalidSetting(
            "email",
            f"the email address {value!r} is not name@domain (the domain needs a dot and "
            f"a top-level part of two letters or more): {example}",
        )
    return value


# -- addresses and ports ------------------------------------------------------------------

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _port(field: str, what: str, text: str | int) -> int:
    raw = str(text).strip() if isinstance(text, (str, int)) else ""
    if not raw.isascii() or not raw.isdigit():
        raise InvalidSetting(field, f"{what} {raw!r} is not a port: write a number 1-65535")
    port = int(raw)
    if not 1 <= port <= 65535:
        raise InvalidSetting(field, f"{what} {port} is out of range: write a number 1-65535")
    return port


def check_port(text: str | int) -> int:
    return _port("port", "the port", text)


def _hostname(field: str, what: str, host: str) -> str | None:
    """``host`` as a lower-case ASCII host name, or None if it is no host name at all."""
    try:
        name = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return None
    name = name.lower().removesuffix(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    if labels[-1].isdigit():
        raise InvalidSetting(field, f"{what}: {host!r} is neither an IPv4 address nor a name")
    return name


def check_external_address(text: str) -> str:
    """``host:port`` where the network reaches this node: a host name, an IPv4 address or a
    bracketed IPv6 address, and a port 1-65535. Resolving the name is :func:`resolves`."""
    field, what = "external_address", "the external address"
    value = text.strip() if isinstance(text, str) else ""
    form = "write HOST:PORT, e.g. mynode.example.com:28967 or 203.0.113.7:28967"
    if not value:
        raise InvalidSetting(field, f"{what} is empty: {form}")
    if "://" in value or "/" in value:
        raise InvalidSetting(field, f"{what} {value!r} is not HOST:PORT: {form}, no http:// or /")
    if value.startswith("["):
        host, close, rest = value[1:].partition("]")
        if not close or not rest.startswith(":"):
            raise InvalidSetting(field, f"{what} {value!r} needs a port after ]: write [IPv6]:PORT")
        port_text = rest[1:]
        try:
            ip6 = ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidSetting(field, f"{what}: {host!r} is not an IPv6 address") from None
        port = _port(field, f"{what}'s port", port_text)
        _reachable(field, what, ip6)
        return f"[{ip6.compressed}]:{port}"
    host, sep, port_text = value.rpartition(":")
    if not sep:
        raise InvalidSetting(field, f"{what} {value!r} has no port: {form}")
    if ":" in host:
        raise InvalidSetting(
            field, f"{what} {value!r}: write an IPv6 address in brackets, e.g. [2001:db8::7]:28967"
        )
    if not host:
        raise InvalidSetting(field, f"{what} {value!r} has no host: {form}")
    port = _port(field, f"{what}'s port", port_text)
    try:
        ip4 = ipaddress.IPv4Address(host)
    except ValueError:
        name = _hostname(field, what, host)
        if name is None:
            raise InvalidSetting(
                field,
                f"{what}: {host!r} is not a host name (letters, digits and hyphens between "
                f"dots) nor an IP address: {form}",
            ) from None
        return f"{name}:{port}"
    _reachable(field, what, ip4)
    return f"{ip4}:{port}"


def _reachable(field: str, what: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    # Loopback and private addresses stay allowed: a test network on one machine or a LAN
    # uses them. These two can never be an address that others connect to.
    if ip.is_unspecified or ip.is_multicast:
        raise InvalidSetting(
            field,
            f"{what}: {ip} is not an address others can connect to: write this node's "
            "public IP address or its name (e.g. a dynamic-DNS name)",
        )


def resolves(host: str, timeout: float = 5.0) -> bool:
    """True if ``host`` (a name, an IP address or ``[IPv6]``) resolves within ``timeout``
    seconds. getaddrinfo has no deadline of its own, so it runs in a daemon thread that
    is left to finish by itself when the deadline passes."""
    name = host.strip().removeprefix("[").removesuffix("]") if isinstance(host, str) else ""
    if not name:
        return False
    answer: list[bool] = []

    def lookup() -> None:
        try:
            answer.append(bool(socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)))
        except (OSError, UnicodeError):
            answer.append(False)

    thread = threading.Thread(target=lookup, name=f"resolve {name}", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    return bool(answer) and answer[0]


def check_server_url(text: str) -> str:
    """The control plane's ``http(s)://host[:port][/path]``, without a trailing slash (the
    keeper appends its paths). The keeper's ``[update] server`` is checked by this too."""
    field, what = "server_url", "the server URL"
    value = text.strip() if isinstance(text, str) else ""
    form = "write it as https://updates.example.com (http:// works too)"
    if not value:
        raise InvalidSetting(field, f"{what} is empty: {form}")
    if any(c.isspace() for c in value) or not value.isprintable():
        raise InvalidSetting(field, f"{what} {value!r} has a space in it: {form}")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidSetting(field, f"{what} {value!r} must start with http:// or https://: {form}")
    try:
        port = parts.port
    except ValueError:
        raise InvalidSetting(field, f"{what} {value!r} has a bad port: write 1-65535") from None
    host = parts.hostname or ""
    if not host:
        raise InvalidSetting(field, f"{what} {value!r} has no host name: {form}")
    if port == 0:
        raise InvalidSetting(field, f"{what} {value!r} has port 0: write 1-65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if _hostname(field, what, host) is None:
            raise InvalidSetting(field, f"{what}: {host!r} is not a host name: {form}") from None
    if parts.username is not None or parts.query or parts.fragment:
        raise InvalidSetting(
            field, f"{what} {value!r} may not hold a user name, ?query or #fragment: {form}"
        )
    return parts._replace(scheme=parts.scheme.lower()).geturl().rstrip("/")


# -- identity -----------------------------------------------------------------------------


def check_identity_dir(path: str | os.PathLike[str]) -> Path:
    """The folder holds this node's identity: ``identity.key``, a readable ed25519 key.

    That one file is the whole identity of the reference node (decision 067); Storj's
    certificate files are not needed, and a Storj identity's ECDSA key cannot be used."""
    field = "identity_dir"
    folder = Path(path).absolute()
    fix = f"choose the folder that holds this node's {IDENTITY_FILE} (`storagenode setup` wrote it)"
    try:
        if not folder.exists():
            raise InvalidSetting(field, f"the identity folder {folder} does not exist: {fix}")
        if not folder.is_dir():
            hint = f"; that is {folder.parent}" if folder.name == IDENTITY_FILE else ""
            raise InvalidSetting(
                field, f"the identity folder {folder} is a file, not a folder: {fix}{hint}"
            )
        key = folder / IDENTITY_FILE
        if not key.is_file():
            raise InvalidSetting(
                field, f"the identity folder {folder} has no {IDENTITY_FILE}: {fix}"
            )
    except OSError as exc:
        raise InvalidSetting(
            field, f"cannot look into the identity folder {folder}: {exc.strerror or exc}; {fix}"
        ) from None
    from nodekeeper.identity import IdentityError, load_identity

    try:
        load_identity(key)
    except IdentityError as exc:
        storj = (folder / "identity.cert").exists()
        hint = (
            " (identity.cert beside it: this is a Storj identity, whose ECDSA key this node "
            "cannot use)"
            if storj
            else ""
        )
        raise InvalidSetting(field, f"the identity folder {folder}: {exc}{hint}; {fix}") from None
    return folder


# -- storage ------------------------------------------------------------------------------


def max_allocation(free_bytes: int) -> int:
    """The largest allocation that leaves the margin free (pure)."""
    return free_bytes * 100 // (100 + MARGIN_PERCENT)


def check_allocation(allocated: int, free_bytes: int, where: Path) -> None:
    """The one rule: free space ≥ allocation + MARGIN_PERCENT %."""
    limit = max_allocation(free_bytes)
    if allocated > limit:
        raise InvalidSetting(
            "allocation",
            f"the allocation {format_size(allocated)} does not fit: {where} has "
            f"{format_size(free_bytes)} free and the node needs {MARGIN_PERCENT}% beside "
            f"its allocation; allocate at most {format_size(limit)} or free some space",
        )


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    raise InvalidSetting(
        "storage_dir",
        f"the storage folder {path} cannot be made: not even {path.anchor or path} exists "
        "(a drive that is not connected?); connect it or choose another folder",
    )


def _probe_writable(folder: Path, storage: Path) -> None:
    # os.access is not trusted: it ignores Windows ACLs and says yes to root on read-only
    # mounts. Writing a file is the only proof.
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = f"{storage}" if folder == storage else f"{folder} (where {storage} would go)"
        raise InvalidSetting(
            "storage_dir",
            f"the storage folder {where} is not writable: {exc.strerror or exc}; give this "
            "user write access or choose another folder",
        ) from None


def check_storage(path: str | os.PathLike[str], allocation_text: str | int) -> tuple[Path, int]:
    """(absolute storage folder, allocation in bytes). The folder, or the nearest parent
    that exists if it is not there yet, must be a writable folder whose disk has at least
    allocation + MARGIN_PERCENT % free. Nothing is created."""
    try:
        allocated = parse_size(allocation_text)
    except InvalidSizeError as exc:
        raise InvalidSetting("allocation", f"the allocation: {exc}") from None
    storage = Path(path).absolute()
    try:
        existing = _nearest_existing(storage)
        if not existing.is_dir():
            if existing == storage:
                raise InvalidSetting(
                    "storage_dir",
                    f"the storage folder {storage} exists but is not a directory: choose a "
                    "directory",
                )
            raise InvalidSetting(
                "storage_dir",
                f"cannot create the storage folder {storage}: {existing} is a file; choose "
                "a folder on a disk this user can write to",
            )
        _probe_writable(existing, storage)
        free = shutil.disk_usage(existing).free
    except OSError as exc:
        raise InvalidSetting(
            "storage_dir",
            f"cannot look into the storage folder {storage}: {exc.strerror or exc}; choose "
            "another folder",
        ) from None
    check_allocation(allocated, free, existing)
    return storage, allocated
