"""The quiet window and the pause (updater/maintenance.py): pure, every edge."""

from __future__ import annotations

from datetime import datetime, time

import pytest

from nodekeeper.updater.maintenance import QuietWindow, may_update

EVENING = QuietWindow.parse("18:00-23:00")
NIGHT = QuietWindow.parse("22:00 - 06:00")


@pytest.mark.parametrize(
    ("window", "moment", "inside"),
    [
        (EVENING, time(17, 59), False), (EVENING, time(18, 0), True),
        (EVENING, time(22, 59), True), (EVENING, time(23, 0), False),
        (NIGHT, time(21, 59), False), (NIGHT, time(22, 0), True), (NIGHT, time(0, 0), True),
        (NIGHT, time(5, 59), True), (NIGHT, time(6, 0), False), (NIGHT, time(12, 0), False),
    ],
)  # fmt: skip
def test_the_window_starts_inclusive_ends_exclusive_and_wraps_midnight(
    window: QuietWindow, moment: time, inside: bool
) -> None:
    assert window.contains(moment) is inside


@pytest.mark.parametrize(
    ("text", "says"),
    [("18-23", "HH:MM-HH:MM"), ("24:00-01:00", "00-23"), ("18:60-19:00", "minutes"),
     ("18:00-18:00", "pause them until")],
)  # fmt: skip
def test_a_bad_window_says_how_to_write_it(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        QuietWindow.parse(text)


def test_the_minimum_version_wins_over_every_pause() -> None:
    at_eight = datetime(2026, 12, 3, 20, 0)
    later = datetime(2026, 12, 4)
    held = may_update(at_eight, window=EVENING, paused_until=later, below_minimum=False)
    assert not held.allowed and "paused until 2026-12-04 00:00" in held.why
    quiet = may_update(at_eight, window=EVENING, paused_until=None, below_minimum=False)
    assert not quiet.allowed and "quiet window 18:00-23:00" in quiet.why
    forced = may_update(at_eight, window=EVENING, paused_until=later, below_minimum=True)
    assert forced.allowed and "minimum" in forced.why
    free = may_update(datetime(2026, 12, 3, 9), window=EVENING, paused_until=None,
                      below_minimum=False)  # fmt: skip
    assert free.allowed and free.why == ""
    ended = may_update(later, window=None, paused_until=later, below_minimum=False)
    assert ended.allowed  # the pause is over at its own time
