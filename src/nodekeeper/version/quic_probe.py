"""The QUIC version-negotiation probe, on the wire (pure; RFC 8999 and RFC 9000 §6, §17.2.1).

Any QUIC server that receives a long-header packet of a version it does not support,
large enough to start a connection (1200 bytes, RFC 9000 §14.1), answers with a Version
Negotiation packet: version 0, the client's connection IDs swapped, and the versions it
speaks. Versions of the form 0x?a?a?a?a are reserved (RFC 9000 §6.3) and never spoken,
so a packet with one of them draws that answer from every QUIC server, without a TLS
handshake or a real connection: the cheapest proof that UDP reaches the node's QUIC
listener. The control plane sends it (``build_probe``) and checks the answer
(``parse_answer``). The reference node's answer is its own code (``storagenode.quic``):
the node is a separate program and does not import the keeper's package for it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

PROBE_SIZE = 1200  # RFC 9000 §14.1: the smallest datagram a client may start with
CID_LENGTH = 8  # RFC 9000 §7.2: a client's first Destination Connection ID is ≥ 8 bytes
MAX_CID_LENGTH = 255  # RFC 8999 §5.1: version-independent long headers allow up to 255
LONG_HEADER = 0x80
FIXED_BIT = 0x40
RESERVED_MASK = 0x0F0F0F0F
RESERVED_PATTERN = 0x0A0A0A0A


def is_reserved_version(version: int) -> bool:
    """0x?a?a?a?a: a version no endpoint speaks (RFC 9000 §6.3)."""
    return version & RESERVED_MASK == RESERVED_PATTERN


def reserved_version(random_bits: int) -> int:
    """A reserved version from 32 random bits (the high nibbles of each byte vary)."""
    return (random_bits & 0xF0F0F0F0) | RESERVED_PATTERN


@dataclass(frozen=True)
class Probe:
    version: int
    dcid: bytes
    scid: bytes
    packet: bytes


def build_probe(
    *, version: int | None = None, dcid: bytes | None = None, scid: bytes | None = None
) -> Probe:
    """A 1200-byte long-header packet with a reserved version and fresh connection IDs.
    The payload is random: a server does not decrypt it for a version it does not know."""
    version = reserved_version(secrets.randbits(32)) if version is None else version
    if not is_reserved_version(version):
        raise ValueError(f"version {version:#010x} is not reserved (0x?a?a?a?a)")
    dcid = secrets.token_bytes(CID_LENGTH) if dcid is None else dcid
    scid = secrets.token_bytes(CID_LENGTH) if scid is None else scid
    # Laid out as a QUIC v1 Initial (type 0, an empty token, a 2-byte length covering the
    # rest): quic-go looks only at the version-independent header, but other servers
    # (aioquic, tried) parse the whole long header before they notice the version and
    # drop a packet whose fields do not add up.
    head = (
        bytes([LONG_HEADER | FIXED_BIT])
        + version.to_bytes(4, "big")
        + bytes([len(dcid)])
        + dcid
        + bytes([len(scid)])
        + scid
        + b"\x00"  # token length
    )
    rest = PROBE_SIZE - len(head) - 2
    packet = head + (0x4000 | rest).to_bytes(2, "big") + secrets.token_bytes(rest)
    return Probe(version, dcid, scid, packet)


@dataclass(frozen=True)
class Answer:
    """What a datagram that came back is: ``ok`` with the versions offered, or why not."""

    ok: bool
    versions: tuple[int, ...] = ()
    why: str = ""


def parse_answer(probe: Probe, datagram: bytes) -> Answer:
    """Whether ``datagram`` is a Version Negotiation packet answering ``probe``: long
    header, version 0, our source ID as its destination and our destination ID as its
    source (RFC 9000 §17.2.1; anything else could be a stray or forged packet), a
    non-empty list of 4-byte versions that does not offer the version we sent (§6.2: a
    client discards such a packet)."""
    if len(datagram) < 7:
        return Answer(False, why=f"{len(datagram)} bytes, too short for a QUIC long header")
    if not datagram[0] & LONG_HEADER:
        return Answer(False, why="not a QUIC long-header packet")
    if int.from_bytes(datagram[1:5], "big") != 0:
        return Answer(False, why="a QUIC packet, but not Version Negotiation (version is not 0)")
    at = 5
    ids = []
    for _ in range(2):
        length = datagram[at]
        cid = datagram[at + 1 : at + 1 + length]
        if len(cid) != length:
            return Answer(False, why="a connection ID runs past the end of the packet")
        ids.append(cid)
        at += 1 + length
    dcid, scid = ids
    if dcid != probe.scid or scid != probe.dcid:
        return Answer(False, why="Version Negotiation for other connection IDs than ours")
    rest = datagram[at:]
    if not rest or len(rest) % 4:
        return Answer(False, why="Version Negotiation without a whole list of versions")
    versions = tuple(int.from_bytes(rest[i : i + 4], "big") for i in range(0, len(rest), 4))
    if probe.version in versions:
        return Answer(False, why="Version Negotiation offering the version we sent (RFC 9000 §6.2)")
    return Answer(True, versions=versions)
