"""Error and outcome reports a keeper sends to the control plane, signed by the node.

The body is the exact JSON bytes sent; the signature is ed25519 over those bytes, made
with the node identity's key. The public key travels in a header, and the server checks
that it derives to the ``node_id`` in the body, so a report can only speak for the node
whose key signed it. ``report_id`` makes a re-sent report (after a lost answer) a no-op.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from .nodeid import InvalidNodeIdError, node_id_from_public_key, parse_node_id
from .schema import ProcessName, Version

PUBLIC_KEY_HEADER = "X-Nodekeeper-Public-Key"
SIGNATURE_HEADER = "X-Nodekeeper-Signature"
MAX_REPORT_BYTES = 64 * 1024

ReportKind = Literal[
    "heartbeat",  # the version a node runs now; sent once per check cycle
    "update_succeeded",
    "update_failed",
    "download_failed",
    "verification_failed",
    "rolled_back",
    "held_after_migration",
    "crash_loop",
    "hang",
    "out_of_space",
    "limit_hit",
    "stop_timeout",  # the node ignored its graceful stop and its tree was killed
    # the control plane's dial-back found the node unreachable from outside (decision 082);
    # sent once when it becomes so, not again while it stays so
    "unreachable",
]
NOT_FAILURES = frozenset({"heartbeat", "update_succeeded"})


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    report_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    node_id: str
    process: ProcessName
    version: Version  # what the node runs now
    target_version: Version | None = None  # the version an update tried to reach
    kind: ReportKind
    message: str = Field(max_length=4000)
    at: float  # when it happened, node's clock (reports may wait in a queue for days)
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_failure(self) -> bool:
        return self.kind not in NOT_FAILURES


class ReportAuthError(Exception):
    """Unsigned, forged, or signed by a key that is not the node's."""


def new_report_id() -> str:
    return uuid.uuid4().hex


def encode_report(report: Report) -> bytes:
    return json.dumps(report.model_dump(), sort_keys=True, separators=(",", ":")).encode()


def sign_report(body: bytes, key: Ed25519PrivateKey) -> dict[str, str]:
    """The headers that authenticate ``body`` as sent by the holder of ``key``."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        PUBLIC_KEY_HEADER: base64.b64encode(raw).decode(),
        SIGNATURE_HEADER: base64.b64encode(key.sign(body)).decode(),
    }


def verify_signature(body: bytes, public_key_b64: str | None, signature_b64: str | None) -> bytes:
    """Checks the signature; returns the signer's node ID. Raises ReportAuthError."""
    if not public_key_b64 or not signature_b64:
        raise ReportAuthError(
            f"reports must be signed: {PUBLIC_KEY_HEADER} and {SIGNATURE_HEADER} are required"
        )
    try:
        raw_key = base64.b64decode(public_key_b64, validate=True)
        signature = base64.b64decode(signature_b64, validate=True)
        Ed25519PublicKey.from_public_bytes(raw_key).verify(signature, body)
    except (binascii.Error, ValueError, InvalidSignature):
        raise ReportAuthError("the report's signature does not verify") from None
    return node_id_from_public_key(raw_key)


def check_sender(report: Report, signer_node_id: bytes) -> None:
    try:
        claimed = parse_node_id(report.node_id)
    except InvalidNodeIdError as exc:
        raise ReportAuthError(str(exc)) from None
    if claimed != signer_node_id:
        raise ReportAuthError("the report was signed by another node's key")
