"""What the check is about: the node's public port and the program that listens on it.

The port comes, in this order, from ``[firewall] port`` in the keeper's config (said by
the caller), the reference node's ``config.toml`` (``listen = "HOST:PORT"``), or a Storj
node's ``config.yaml`` (``server.address: ":28967"``), both in the node's config
directory. The keeper never imports the node (an import contract), so these few keys are
read here, with the node's defaults: a node set up without ``--listen`` listens on
127.0.0.1:28967, which nothing from the network can reach whatever the firewall says.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from nodekeeper.launcher.textfile import TextDecodeError, read_config_text

# The reference node's file and default (src/storagenode/config.py); Storj's file and key.
NODE_CONFIG = "config.toml"
NODE_DEFAULT_LISTEN = "127.0.0.1:28967"
STORJ_CONFIG = "config.yaml"
_STORJ_ADDRESS = re.compile(r"""^\s*server\.address\s*:\s*["']?([^"'#\s]*)["']?""", re.M)


@dataclass(frozen=True)
class Target:
    """The node's port and program as the check sees them. ``problem`` says why there is
    nothing to check (no port, or a loopback-only listener): the verdict is then unknown
    with that sentence."""

    port: int | None
    program: str | None
    port_source: str
    host: str | None = None
    problem: str | None = None


def split_host_port(text: str) -> tuple[str, int] | None:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (all interfaces); None if not one."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def node_listen(config_dir: Path) -> tuple[str, str] | None:
    """The node's listen address and where it was read, or None when neither file is
    there (the node is not set up yet). Raises ValueError for a file that cannot be read
    or says something that is not an address."""
    toml = config_dir / NODE_CONFIG
    if toml.is_file():
        try:
            # UTF-16 and a BOM too, as the node reads it: operators use Windows editors.
            raw = tomllib.loads(read_config_text(toml))
        except (OSError, TextDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read {toml}: {exc}") from None
        listen = raw.get("listen", NODE_DEFAULT_LISTEN)
        if not isinstance(listen, str):
            raise ValueError(f"{toml}: listen is not a HOST:PORT string")
        where = f"listen in {toml}" if "listen" in raw else f"the node's default ({toml})"
        return listen, where
    yaml = config_dir / STORJ_CONFIG
    if yaml.is_file():
        try:
            text = read_config_text(yaml)
        except (OSError, TextDecodeError) as exc:
            raise ValueError(f"cannot read {yaml}: {exc}") from None
        found = _STORJ_ADDRESS.search(text)
        # Storj's default when the key is absent.
        return (
            (found.group(1), f"server.address in {yaml}")
            if found
            else (
                ":28967",
                f"Storj's default server.address ({yaml})",
            )
        )
    return None


def resolve_target(
    *, config_dir: Path, port: int | None, program: str | None, port_key: str
) -> Target:
    """The target for a node whose config lives in ``config_dir``; ``port`` (from
    ``port_key`` in the keeper's config) wins over what the node's files say."""
    if port is not None:
        return Target(port, program, port_key)
    try:
        found = node_listen(config_dir)
    except ValueError as exc:
        return Target(None, program, "", problem=f"the node's port is unknown: {exc}")
    if found is None:
        return Target(
            None,
            program,
            "",
            problem=f"the node's port is unknown: {config_dir} has no {NODE_CONFIG} or "
            f"{STORJ_CONFIG} (not set up yet?); set {port_key} in the keeper's config",
        )
    listen, where = found
    parsed = split_host_port(listen)
    if parsed is None:
        return Target(
            None, program, where, problem=f"the node's port is unknown: {where} is {listen!r}"
        )
    host, number = parsed
    if is_loopback(host):
        return Target(
            number,
            program,
            where,
            host=host,
            problem=f"the node listens on {host} only ({where}): nothing from the network "
            "can reach it, whatever the firewall says; set it up with a public listen "
            f"address (e.g. --listen :{number})",
        )
    return Target(number, program, where, host=host)
