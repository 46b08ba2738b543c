from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nodes import NodeProcess, NodeSetup, setup_node


@pytest.fixture
def node_setup(tmp_path: Path) -> NodeSetup:
    return setup_node(tmp_path, allocated="50 MB")


@pytest.fixture
def node(node_setup: NodeSetup) -> Iterator[NodeProcess]:
    with NodeProcess(node_setup).start() as proc:
        proc.wait_ready()
        yield proc
