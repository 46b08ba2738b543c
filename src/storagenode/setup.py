"""``storagenode setup``: validate the operator's choices, then write config and identity.

Nothing is written until every check has passed, and the config file is written last:
its presence is what marks the node as set up.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from nodekeeper.durable import write_durably as atomic_write
from storagenode import storagedir
from storagenode.addresses import Address, InvalidAddressError, is_loopback, parse_address
from storagenode.config import CONFIG_FILE, IDENTITY_FILE, TOKEN_FILE, NodeConfig, render_config
from storagenode.fsutil import exclusive_write
from storagenode.identity import new_identity_pem, node_id_text
from storagenode.sizes import InvalidSizeError, format_size, parse_size

# Room left beside the allocation for the database, temp files of uploads in flight and
# file-system overhead (Storj's guidance is 10%).
MARGIN_PERCENT = 10


class SetupRefusedError(Exception):
    """Setup will not proceed; the message says what to change."""


@dataclass(frozen=True)
class SetupRequest:
    config_dir: Path
    storage_dir: Path
    allocated: str
    listen: str
    control_listen: str


def max_allocation(free_bytes: int) -> int:
    """The largest allocation that leaves the margin free (pure)."""
    return free_bytes * 100 // (100 + MARGIN_PERCENT)


def check_allocation(allocated: int, free_bytes: int, where: Path) -> None:
    limit = max_allocation(free_bytes)
    if allocated > limit:
        raise SetupRefusedError(
            f"--allocated {format_size(allocated)} does not fit: {where} has "
            f"{format_size(free_bytes)} free and the node needs "
            f"{MARGIN_PERCENT}% beside its allocation; allocate at most "
            f"{format_size(limit)} or free some space"
        )


def _address(flag: str, text: str) -> Address:
    try:
        address = parse_address(text)
    except InvalidAddressError as exc:
        raise SetupRefusedError(f"{flag}: {exc}") from None
    if address.port == 0:
        raise SetupRefusedError(f"{flag}: choose a port; 0 would change at every start")
    return address


def validate(request: SetupRequest) -> tuple[int, Address, Address]:
    """Checks that need no disk: size and addresses."""
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
    return allocated, listen, control


def run_setup(request: SetupRequest) -> tuple[NodeConfig, str]:
    """Set the node up; returns its config and node ID text. Raises SetupRefusedError."""
    allocated, listen, control = validate(request)
    config_dir = request.config_dir.absolute()
    storage_dir = request.storage_dir.absolute()
    if (config_dir / IDENTITY_FILE).exists():
        raise SetupRefusedError(
            f"an identity already exists at {config_dir / IDENTITY_FILE}: setup never "
            "replaces it (the node's reputation is tied to it); to start a new node, "
            "choose another --config-dir"
        )
    try:
        storagedir.ensure_writable_dir(config_dir)
        storagedir.ensure_writable_dir(storage_dir)
        owner = storagedir.read_owner(storage_dir)
    except (storagedir.StorageDirError, OSError) as exc:
        raise SetupRefusedError(str(exc)) from None
    if owner is not None:
        raise SetupRefusedError(
            f"{storage_dir} already holds the pieces of node {owner}: choose an empty --storage-dir"
        )
    check_allocation(allocated, shutil.disk_usage(storage_dir).free, storage_dir)

    pem, node_id = new_identity_pem()
    node = node_id_text(node_id)
    config = NodeConfig(
        config_dir=config_dir,
        storage_dir=storage_dir,
        allocated_bytes=allocated,
        listen=listen,
        control_listen=control,
    )
    try:
        exclusive_write(config_dir / IDENTITY_FILE, pem, 0o600)
        atomic_write(config_dir / TOKEN_FILE, secrets.token_hex(32).encode("ascii"), 0o600)
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
