"""The reachability check's two dials (decision 082): a TCP connect and a QUIC probe over
UDP, each over within its deadline whatever the far end does.

TCP: a connect, closed at once, nothing sent. A port that drops the SYN is "unreachable"
at the deadline. UDP: the reserved-version packet of ``version.quic_probe``, sent on a
*connected* socket (the kernel then passes up only datagrams from that address and port,
and an ICMP port-unreachable as ECONNREFUSED) and sent once more halfway to the deadline
against loss. Only a Version Negotiation echoing our connection IDs counts; at most
``MAX_DATAGRAMS`` datagrams are looked at, each read at most 64 KiB (a UDP datagram's
limit), so garbage or a flood costs a bounded amount of work.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time

from nodekeeper.version.quic_probe import Probe, build_probe, parse_answer

from .reachability_rules import ProbeResult

MAX_DATAGRAMS = 32


async def tcp_check(ip: str, port: int, deadline: float) -> ProbeResult:
    started = time.monotonic()
    writer = None
    try:
        async with asyncio.timeout(deadline):
            _reader, writer = await asyncio.open_connection(ip, port)
    except TimeoutError:
        return ProbeResult(
            "unreachable",
            f"got no answer within {deadline:g} s (a firewall or router drops the connection)",
        )
    except ConnectionRefusedError:
        return ProbeResult("unreachable", "was refused (nothing listens on that port there)")
    except OSError as exc:
        return ProbeResult("unreachable", f"failed: {exc.strerror or exc}")
    finally:
        if writer is not None:
            writer.transport.abort()  # nothing to say; no wait for the far end's close
    return ProbeResult("reachable", f"connected in {(time.monotonic() - started) * 1000:.0f} ms")


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.answered = asyncio.get_running_loop().create_future()
        self.seen = 0
        self.last_bad = ""
        self.refused = False

    def datagram_received(self, data: bytes, addr: object) -> None:
        if self.answered.done() or self.seen >= MAX_DATAGRAMS:
            return
        self.seen += 1
        answer = parse_answer(self.probe, data)
        if answer.ok:
            self.answered.set_result(answer.versions)
        else:
            self.last_bad = answer.why

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) in (
            errno.ECONNREFUSED,
            errno.EHOSTUNREACH,
            errno.ENETUNREACH,
        ):
            self.refused = True
            if not self.answered.done():
                self.answered.set_result(None)


async def udp_check(ip: str, port: int, deadline: float) -> ProbeResult:
    probe = build_probe()
    loop = asyncio.get_running_loop()
    try:
        transport, collector = await loop.create_datagram_endpoint(
            lambda: _Collector(probe), remote_addr=(ip, port)
        )
    except OSError as exc:
        return ProbeResult("unreachable", f"the probe could not be sent ({exc.strerror or exc})")
    try:
        transport.sendto(probe.packet)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline / 2):
                await asyncio.shield(collector.answered)
        if not collector.answered.done():
            transport.sendto(probe.packet)  # once more: a datagram may be lost
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline / 2):
                    await asyncio.shield(collector.answered)
    finally:
        transport.abort()
    if collector.answered.done() and collector.answered.result() is not None:
        versions = ", ".join(f"{v:#010x}" for v in collector.answered.result()[:4])
        return ProbeResult(
            "reachable", f"a QUIC server answered with Version Negotiation (offering {versions})"
        )
    if collector.refused:
        return ProbeResult("unreachable", "the port was refused (ICMP port unreachable)")
    if collector.seen:
        return ProbeResult(
            "no_answer",
            f"no QUIC answer within {deadline:g} s; {collector.seen} datagram(s) came back "
            f"that were not one (last: {collector.last_bad})",
        )
    return ProbeResult("no_answer", f"no answer to the QUIC probe within {deadline:g} s")
