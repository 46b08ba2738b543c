from __future__ import annotations

import pytest

from .lab import Lab

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_first_install_then_update(lab: Lab) -> None:
    lab.publish("1.0.0")
    lab.start_keeper()
    lab.wait_running("1.0.0")
    lab.put_piece("a1", b"x" * 1000)
    lab.release("1.0.1")
    lab.wait_running("1.0.1")
    lab.check_pieces()
    journal = lab.journal()
    assert journal["previous"] == "1.0.0"
