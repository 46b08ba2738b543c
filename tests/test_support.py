"""The suite's own helpers that tests rely on for isolation."""

from __future__ import annotations

from tests.support import free_port


def test_free_port_never_hands_out_a_port_twice() -> None:
    # Plain bind(0)-and-close gave the same port to two calls in a row 2 times in 20 000
    # here: a node set up with equal --listen and --control-listen failed a full run.
    # Never within the last thousand; and a worker can go on handing out ports for a
    # whole run (ports of tests that ended come round again).
    ports = [free_port() for _ in range(3000)]
    assert all(len(set(ports[i : i + 1000])) == 1000 for i in range(0, 2000, 250))
    assert all(20000 <= port < 32000 for port in ports)
