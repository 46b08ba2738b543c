"""Storj's rollout math, byte for byte (with its small-percentage alignment bug fixed).

A node is a rollout candidate when HMAC-SHA256(key=seed, msg=node_id) <= cursor, both
compared as 32-byte big-endian numbers. The cursor for a percentage is
``((2**256 - 1) // 1_000_000) * int(pct * 10_000)``, right-aligned in 32 bytes.
"""

from __future__ import annotations

import hashlib
import hmac

CURSOR_SIZE = 32
MAX_CURSOR = b"\xff" * CURSOR_SIZE
ZERO_CURSOR = b"\x00" * CURSOR_SIZE
_MAX_INT = 2 ** (8 * CURSOR_SIZE) - 1
_STEP = _MAX_INT // 1_000_000  # one ten-thousandth of a percent


class InvalidPercentageError(ValueError):
    """A rollout percentage outside 0..100."""


def percentage_to_cursor(pct: float) -> bytes:
    """The 32-byte cursor that admits ``pct`` percent of all node IDs."""
    if isinstance(pct, bool) or not isinstance(pct, int | float):
        raise InvalidPercentageError(f"percentage must be a number, got {pct!r}")
    if not 0 <= pct <= 100:  # also rejects NaN
        raise InvalidPercentageError(f"percentage must be between 0 and 100, got {pct}")
    if pct == 100:
        return MAX_CURSOR
    # int() truncates like Go's int64(): the same cursor Storj computes.
    return (_STEP * int(pct * 10_000)).to_bytes(CURSOR_SIZE, "big")


def cursor_to_percentage(cursor: bytes) -> float:
    """The inverse, for display: how many percent of node IDs a cursor admits."""
    if cursor == MAX_CURSOR:
        return 100.0
    return int.from_bytes(cursor, "big") / _STEP / 10_000


def rollout_hash(node_id: bytes, seed: bytes) -> bytes:
    return hmac.new(seed, node_id, hashlib.sha256).digest()


def is_rollout_candidate(node_id: bytes, seed: bytes, cursor: bytes) -> bool:
    """True when this node is inside the rollout described by seed and cursor."""
    if len(cursor) != CURSOR_SIZE:
        raise ValueError(f"cursor must be {CURSOR_SIZE} bytes, got {len(cursor)}")
    # Equal-length byte strings compare as big-endian numbers.
    return rollout_hash(node_id, seed) <= cursor
