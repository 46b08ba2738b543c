from __future__ import annotations

import pytest

from nodekeeper.logs.directory import LogDirectory


@pytest.fixture(autouse=True)
def no_directory_left_open():
    """Every test closes what it opens: a LogDirectory left registered would keep its
    compressor thread and its cap settings alive into the next test."""
    yield
    leftover = list(LogDirectory._registry)
    for directory in list(LogDirectory._registry.values()):
        while directory._users:
            directory.release(0)
    assert not leftover, f"log directories left open: {leftover}"
