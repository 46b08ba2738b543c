"""Storj node IDs: 32 raw bytes, written as base58check with a version byte.

Storj keeps the ID format version in the last byte of the 32-byte ID and writes the
string form as base58check(version_byte, id with that last byte zeroed). Version 0
IDs, the only ones in use, therefore start with ``1``. The full 32 bytes (version byte
included) are what the rollout HMAC is computed over.
"""

from __future__ import annotations

import base58

NODE_ID_SIZE = 32


class InvalidNodeIdError(ValueError):
    """The text or bytes are not a node ID."""


def parse_node_id(text: str) -> bytes:
    """Parse the Storj string form (base58check) or 64 hex characters into 32 bytes."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidNodeIdError("node ID is empty: expected Storj's base58 form or 64 hex digits")
    raw = text.strip()
    if len(raw) == 2 * NODE_ID_SIZE:
        try:
            return bytes.fromhex(raw)
        except ValueError:
            pass  # 64 characters can also be base58; fall through
    try:
        decoded = base58.b58decode_check(raw)
    except ValueError as exc:
        raise InvalidNodeIdError(
            f"{text!r} is not a node ID: base58check decoding failed ({exc}); "
            "expected the form `storagenode info` prints, or 64 hex digits"
        ) from None
    if len(decoded) != 1 + NODE_ID_SIZE:
        raise InvalidNodeIdError(
            f"{text!r} decodes to {len(decoded) - 1} bytes, a node ID has {NODE_ID_SIZE}"
        )
    version, body = decoded[0], decoded[1:]
    if body[-1] != 0:
        raise InvalidNodeIdError(f"{text!r} is malformed: its version byte is set twice")
    return body[:-1] + bytes([version])


def format_node_id(raw: bytes) -> str:
    """The Storj string form of a 32-byte node ID."""
    if not isinstance(raw, bytes | bytearray) or len(raw) != NODE_ID_SIZE:
        raise InvalidNodeIdError(f"a node ID is {NODE_ID_SIZE} bytes")
    version = raw[-1]
    unversioned = bytes(raw[:-1]) + b"\x00"
    return base58.b58encode_check(bytes([version]) + unversioned).decode("ascii")


def node_id_from_public_key(raw_public_key: bytes) -> bytes:
    """The node ID of an ed25519 identity: sha256 of the raw 32-byte public key with the
    last byte set to the ID format version (0), as the reference node derives it."""
    import hashlib

    if len(raw_public_key) != 32:
        raise InvalidNodeIdError("an ed25519 public key is 32 bytes")
    return hashlib.sha256(raw_public_key).digest()[:-1] + b"\x00"
