"""The QUIC version-negotiation probe on the wire (RFC 8999, RFC 9000 §6, §17.2.1): the
packet the control plane sends, the answers it takes and the ones it refuses, and the
answer the reference node gives (its own code, storagenode.quic: two implementations
checked against each other)."""

from __future__ import annotations

import pytest

from nodekeeper.version.quic_probe import (
    PROBE_SIZE,
    build_probe,
    is_reserved_version,
    parse_answer,
    reserved_version,
)
from storagenode.quic import answer_for

OFFERED = (0x00000001, 0x6B3343CF)


def vn(dcid: bytes, scid: bytes, versions: tuple[int, ...], first: int = 0x80) -> bytes:
    return (
        bytes([first, 0, 0, 0, 0, len(dcid)])
        + dcid
        + bytes([len(scid)])
        + scid
        + b"".join(v.to_bytes(4, "big") for v in versions)
    )


def test_the_probe_is_a_1200_byte_initial_shaped_packet_with_a_reserved_version():
    probe = build_probe()
    packet = probe.packet
    assert len(packet) == PROBE_SIZE
    assert packet[0] & 0xC0 == 0xC0  # long header, fixed bit: a v1 Initial's layout
    version = int.from_bytes(packet[1:5], "big")
    assert version == probe.version and is_reserved_version(version)
    assert packet[5] == len(probe.dcid) == 8 and packet[6:14] == probe.dcid
    assert packet[14] == len(probe.scid) == 8 and packet[15:23] == probe.scid
    assert packet[23] == 0  # no token
    length = int.from_bytes(packet[24:26], "big")
    assert length & 0xC000 == 0x4000 and (length & 0x3FFF) == PROBE_SIZE - 26
    assert build_probe().dcid != probe.dcid  # fresh IDs every time


@pytest.mark.parametrize("bits", [0, 0xFFFFFFFF, 0x12345678])
def test_reserved_versions(bits):
    assert is_reserved_version(reserved_version(bits))
    assert not is_reserved_version(0x00000001)


def test_a_non_reserved_version_is_refused():
    with pytest.raises(ValueError, match="not reserved"):
        build_probe(version=1)


def test_the_reference_answer_is_taken():
    probe = build_probe()
    answer = answer_for(probe.packet, OFFERED)
    assert answer is not None and len(answer) < len(probe.packet)  # never amplifies
    parsed = parse_answer(probe, answer)
    assert parsed.ok and parsed.versions == OFFERED


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: b"", "too short"),
        (lambda p: b"\x00" * 40, "not a QUIC long-header packet"),
        (lambda p: b"\xc0\x00\x00\x00\x01" + b"\x00" * 40, "not Version Negotiation"),
        (lambda p: vn(p.dcid, p.scid, OFFERED), "other connection IDs"),  # not swapped
        (lambda p: vn(p.scid, b"x" * 8, OFFERED), "other connection IDs"),
        (lambda p: vn(p.scid, p.dcid, ()), "without a whole list"),
        (lambda p: vn(p.scid, p.dcid, OFFERED)[:-1], "without a whole list"),
        (lambda p: vn(p.scid, p.dcid, (p.version,)), "offering the version we sent"),
        (lambda p: bytes([0x80, 0, 0, 0, 0, 200]) + b"x" * 20, "runs past the end"),
        (lambda p: b"\xff" * 65507, "not Version Negotiation"),  # the largest datagram
    ],
    ids=[
        "empty",
        "short-header",
        "v1-packet",
        "ids-not-swapped",
        "foreign-ids",
        "no-versions",
        "torn-list",
        "offers-our-version",
        "cid-past-end",
        "huge",
    ],
)
def test_answers_that_are_not_ours_are_refused_with_why(make, why):
    probe = build_probe()
    parsed = parse_answer(probe, make(probe))
    assert not parsed.ok and why in parsed.why


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"\xc0" + (0x1A2A3A4A).to_bytes(4, "big") + b"\x08",  # truncated
        build_probe().packet[:1199],  # too small to answer: anti-amplification
        b"\x40" + b"\x00" * 1300,  # short header
        vn(b"a" * 8, b"b" * 8, OFFERED) + b"\x00" * 1200,  # a Version Negotiation itself
        b"\xc0\x00\x00\x00\x01\x08" + b"\x00" * 1300,  # a version it speaks
    ],
    ids=["empty", "truncated", "small", "short-header", "vn", "spoken-version"],
)
def test_the_node_stays_silent_except_to_a_probe(datagram):
    assert answer_for(datagram, OFFERED) is None
