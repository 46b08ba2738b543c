"""The suite's own helpers that tests rely on for isolation."""

from __future__ import annotations

from tests.support import free_port


def test_free_port_never_hands_out_a_port_twice() -> None:
    # Plain bind(0)-and-close gave the same port to two calls in a row 2 times in 20 000
    # here: a node set up with equal --listen and --control-listen failed a full run.
    ports = [free_port() for _ in range(3000)]
    assert len(set(ports)) == len(ports)
