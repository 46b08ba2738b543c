"""A UDP listener on the node's public port that answers the QUIC version-negotiation probe.

Storj's real storagenode serves QUIC on its public port through quic-go, which answers a
long-header packet of a version it does not speak with a Version Negotiation packet, as
RFC 9000 §6 requires of every QUIC server; the control plane's reachability check
(decision 082) sends exactly such a packet to learn whether UDP reaches the node. This
reference node speaks no QUIC, so it does only that: it answers the probe
(``answer_for``) and ignores every other datagram. Standard library only, like the rest
of the node's start path: the node is a separate program from the keeper that runs it. It offers
one reserved version (0x?a?a?a?a, RFC 9000 §6.3): a list that names no real version, so
no client is led to try a handshake that could not succeed.

One daemon thread, one datagram at a time; answers are smaller than the 1200-byte packets
they answer, so the listener cannot amplify a spoofed packet.
"""

from __future__ import annotations

import secrets
import socket
import threading

from storagenode.log import get_logger

# What this node offers: a reserved version, i.e. none it could really speak.
OFFERED = (0x6A7A8A9A,)
MAX_DATAGRAM = 65535
MIN_INITIAL = 1200  # RFC 9000 §14.1: the smallest datagram that may start a connection
LONG_HEADER = 0x80


def answer_for(datagram: bytes, offered: tuple[int, ...]) -> bytes | None:
    """The Version Negotiation packet (RFC 9000 §17.2.1) a server speaking ``offered``
    sends back to ``datagram``, or None when it must stay silent: not a long header, a
    version it speaks (a real connection, not ours to answer) or a Version Negotiation
    itself (answering one could loop between two servers), smaller than 1200 bytes (so
    an answer never amplifies a spoofed packet), or malformed."""
    if len(datagram) < MIN_INITIAL or not datagram[0] & LONG_HEADER:
        return None
    version = int.from_bytes(datagram[1:5], "big")
    if version == 0 or version in offered:
        return None
    at = 5
    ids = []
    for _ in range(2):
        length = datagram[at]
        cid = datagram[at + 1 : at + 1 + length]
        if len(cid) != length:
            return None
        ids.append(cid)
        at += 1 + length
    dcid, scid = ids
    return (
        bytes([LONG_HEADER | secrets.randbits(7)])
        + bytes(4)  # version 0: Version Negotiation
        + bytes([len(scid)])
        + scid  # the client's source ID is our destination
        + bytes([len(dcid)])
        + dcid
        + b"".join(v.to_bytes(4, "big") for v in offered)
    )


class QuicProbeResponder:
    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(0.2)  # how soon close() is noticed
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="quic-probe", daemon=True)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> QuicProbeResponder:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                datagram, sender = self.sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:  # closed, or an ICMP error from an earlier answer: go on
                if self._stop.is_set():
                    return
                continue
            try:
                answer = answer_for(datagram, OFFERED)
                if answer is not None:
                    self.answered += 1  # before the send: the answer may be read at once
                    self.sock.sendto(answer, sender)
            except Exception:  # a datagram never stops the node
                get_logger().warning("cannot answer a QUIC probe", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1.0)
        self.sock.close()
