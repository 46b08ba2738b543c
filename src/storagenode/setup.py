"""``storagenode setup``: validate the operator's choices, then write config and identity.

Nothing is written until every check has passed, and the config file is written last:
its presence is what marks the node as set up. The operator's settings (wallet, email,
external address, an existing identity, the storage folder and its allocation) are
checked by :mod:`nodekeeper.node_settings`, the same code as the installer's and the
tray wizard's (decision 067).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from nodekeeper import node_settings
from nodekeeper.durable import write_durably as atomic_write
from nodekeeper.node_settings import MARGIN_PERCENT, InvalidSetting, max_allocation
from storagenode import storagedir
from storagenode.addresses import Address, InvalidAddressError, is_loopback, parse_address
from storagenode.config import CONFIG_FILE, IDENTITY_FILE, TOKEN_FILE, NodeConfig, render_config
from storagenode.fsutil import exclusive_write
from storagenode.identity import IdentityError, new_identity_pem, node_id_text, parse_identity_pem
from storagenode.sizes import InvalidSizeError, parse_size

__all__ = [
    "MARGIN_PERCENT",
    "CheckedRequest",
    "SetupRefusedError",
    "SetupRequest",
    "check_allocation",
    "max_allocation",
    "run_setup",
    "validate",
]

# The flag of each node_settings field, for the refusal's message.
FLAGS = {
    "wallet": "--wallet",
    "email": "--email",
    "external_address": "--external-address",
    "identity_dir": "--identity-dir",
    "storage_dir": "--storage-dir",
    "allocation": "--allocated",
}


class SetupRefusedError(Exception):
    """Setup will not proceed; the message says what to change."""


@dataclass(frozen=True)
class SetupRequest:
    config_dir: Path
    storage_dir: Path
    allocated: str
    listen: str
    control_listen: str
    wallet: str | None = None
    email: str | None = None
    external_address: str | None = None
    # An existing identity to use (its identity.key is copied) instead of a new one.
    identity_dir: Path | None = None


@dataclass(frozen=True)
class CheckedRequest:
    """A request's values after the checks that need no disk."""

    allocated: int
    listen: Address
    control_listen: Address
    wallet: str | None = None
    email: str | None = None
    external_address: str | None = None


def _refused(exc: InvalidSetting) -> SetupRefusedError:
    return SetupRefusedError(f"{FLAGS.get(exc.field, exc.field)}: {exc}")


def check_allocation(allocated: int, free_bytes: int, where: Path) -> None:
    """node_settings' rule (free ≥ allocation + 10 %) as a setup refusal."""
    try:
        node_settings.check_allocation(allocated, free_bytes, where)
    except InvalidSetting as exc:
        raise _refused(exc) from None


def _address(flag: str, text: str) -> Address:
    try:
        address = parse_address(text)
    except InvalidAddressError as exc:
        raise SetupRefusedError(f"{flag}: {exc}") from None
    if address.port == 0:
        raise SetupRefusedError(f"{flag}: choose a port; 0 would change at every start")
    return address


def validate(request: SetupRequest) -> CheckedRequest:
    """Checks that need no disk: size, addresses and the operator's settings."""
    try:
        allocated = parse_size(request.allocated)
    except InvalidSizeError as exc:
        raise SetupRefusedError(f"--allocated: {exc}") from None
    listen = _address("--listen", request.listen)
    control = _address("--control-listen", request.control_listen)
    if not is_loopback(control.host):
        raise SetupRefusedError(
            f"--control-listen {control}: the control address must be loopback "
            "(127.0.0.1 or [::1]) because it can stop the node"
        )
    if control == listen:
        raise SetupRefusedError("--control-listen must differ from --listen")
    try:
        wallet = None if request.wallet is None else node_settings.check_wallet(request.wallet)
        email = None if request.email is None else node_settings.check_email(request.email)
        external = (
            None
            if request.external_address is None
            else node_settings.check_external_address(request.external_address)
        )
    except InvalidSetting as exc:
        raise _refused(exc) from None
    return CheckedRequest(allocated, listen, control, wallet, email, external)


def _identity(request: SetupRequest, config_dir: Path) -> tuple[bytes | None, bytes]:
    """(PEM to write into the config dir, or None when it is there already; node ID).

    A new key, or the one in --identity-dir: checked by node_settings, read once, and
    copied unless --identity-dir is the config dir itself (then it is used in place)."""
    if request.identity_dir is None:
        return new_identity_pem()
    try:
        source = node_settings.check_identity_dir(request.identity_dir)
    except InvalidSetting as exc:
        raise _refused(exc) from None
    try:
        pem = (source / IDENTITY_FILE).read_bytes()
        _key, node_id = parse_identity_pem(pem, source / IDENTITY_FILE)
    except (OSError, IdentityError) as exc:
        raise SetupRefusedError(f"--identity-dir: {exc}") from None
    return (None if _same_dir(source, config_dir) else pem), node_id


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def run_setup(request: SetupRequest) -> tuple[NodeConfig, str]:
    """Set the node up; returns its config and node ID text. Raises SetupRefusedError."""
    checked = validate(request)
    config_dir = request.config_dir.absolute()
    in_place = request.identity_dir is not None and _same_dir(request.identity_dir, config_dir)
    if (config_dir / IDENTITY_FILE).exists() and not in_place:
        raise SetupRefusedError(
            f"an identity already exists at {config_dir / IDENTITY_FILE}: setup never "
            "replaces it (the node's reputation is tied to it); to start a new node, "
            "choose another --config-dir"
        )
    if in_place and (config_dir / CONFIG_FILE).exists():
        raise SetupRefusedError(
            f"{config_dir} is set up already ({CONFIG_FILE} is there): edit it, or choose "
            "another --config-dir"
        )
    pem, node_id = _identity(request, config_dir)
    node = node_id_text(node_id)
    try:
        storage_dir, allocated = node_settings.check_storage(request.storage_dir, request.allocated)
    except InvalidSetting as exc:
        raise _refused(exc) from None
    try:
        owner = storagedir.read_owner(storage_dir) if storage_dir.is_dir() else None
    except OSError as exc:
        raise SetupRefusedError(f"--storage-dir: {exc}") from None
    if owner is not None and owner != node:
        raise SetupRefusedError(
            f"{storage_dir} already holds the pieces of node {owner}: choose an empty --storage-dir"
        )
    try:
        storagedir.ensure_writable_dir(config_dir)
        storagedir.ensure_writable_dir(storage_dir)
    except (storagedir.StorageDirError, OSError) as exc:
        raise SetupRefusedError(str(exc)) from None

    config = NodeConfig(
        config_dir=config_dir,
        storage_dir=storage_dir,
        allocated_bytes=allocated,
        listen=checked.listen,
        control_listen=checked.control_listen,
        wallet=checked.wallet,
        email=checked.email,
        external_address=checked.external_address,
    )
    try:
        if pem is not None:
            exclusive_write(config_dir / IDENTITY_FILE, pem, 0o600)
        else:  # --identity-dir is the config dir: the key stays, private like a copy
            (config_dir / IDENTITY_FILE).chmod(0o600)
        atomic_write(config_dir / TOKEN_FILE, secrets.token_hex(32).encode("ascii"), 0o600)
        if owner is None:
            storagedir.claim(storage_dir, node)
        atomic_write(config_dir / CONFIG_FILE, render_config(config), 0o644)
    except FileExistsError:
        raise SetupRefusedError(
            f"an identity appeared at {config_dir / IDENTITY_FILE} while setting up; "
            "is another setup running?"
        ) from None
    except OSError as exc:
        raise SetupRefusedError(f"cannot write the node's files: {exc}") from None
    return config, node
