"""The live view fits the terminal it runs in: rendered in-process at real sizes."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from nodekeeper.quickstart.view import Feed, render

HINT = "announcement: http://127.0.0.1:7780/   keeper status: http://127.0.0.1:41234/status"
DONE = "done: the node runs 1.0.3; Ctrl-C stops everything"


def rollouts() -> list[dict]:
    # Two processes and several reported versions, some failed: the widest realistic rows.
    return [
        {
            "process": "storagenode",
            "minimum": "1.0.0",
            "target": "1.0.3",
            "percent": 75.0,
            "state": "ramping",
            "reported": {
                "1.0.1": {"nodes": 3, "failures": 0},
                "1.0.2": {"nodes": 12, "failures": 2},
                "1.0.3": {"nodes": 40, "failures": 1},
            },
        },
        {
            "process": "nodekeeper",
            "minimum": "0.9.0",
            "target": None,
            "percent": None,
            "state": "steady",
            "reported": {},
        },
    ]


def keeper_status() -> dict:
    return {
        "state": "running",
        "pid": 123456,
        "version": "1.0.2",
        "restarts": 3,
        "last_pulse": {"ok": False, "detail": "connection refused " * 5},
        "update": {
            "current": "1.0.2",
            "previous": "1.0.1",
            "target": "1.0.3",
            "step": "probation",
            "held": {"message": "1.0.3 failed its probation twice; " * 4},
        },
    }


def full_feed(count: int = 40) -> Feed:
    feed = Feed()
    for i in range(count):
        # Long ones too: a real "update failed: ..." message runs over 80 columns.
        feed.add(f"event {i:02d}: " + "the node said something long " * (i % 4), at=1e9 + i)
    feed.add(DONE, at=1e9 + count)
    return feed


def frame(width: int, height: int, feed: Feed, headline: str) -> list[str]:
    out = io.StringIO()
    console = Console(width=width, height=height, file=out, color_system=None, legacy_windows=False)
    console.print(
        render(
            rollouts(),
            keeper_status(),
            feed,
            HINT,
            headline=headline,
            rows=console.size.height,
            control_plane="http://127.0.0.1:7780/",
        )
    )
    return out.getvalue().splitlines()


@pytest.mark.parametrize(("width", "height"), [(80, 24), (120, 40)])
def test_frame_fits_the_terminal_and_shows_the_newest_events_and_done(width, height):
    feed = full_feed()
    lines = frame(width, height, feed, DONE)
    text = "\n".join(lines)
    assert len(lines) <= height, text
    assert all(len(line) <= width for line in lines), text
    # The newest events are on screen (the last two, at least), and the done line.
    assert DONE in text
    assert "event 39" in text and "event 38" in text, text
    # The fixed part is there too: the rollout row, the keeper and the hint.
    assert "storagenode" in text and "ramping" in text
    assert "pid 123456" in text
    assert lines[-1].startswith("announcement:")


def test_a_taller_terminal_shows_more_events():
    feed = full_feed()
    small = sum("event " in line for line in frame(80, 24, feed, "rolling out"))
    tall = sum("event " in line for line in frame(120, 40, feed, "rolling out"))
    assert 10 <= small < tall


def test_the_headline_stays_visible_when_done_has_scrolled_out_of_the_events():
    feed = full_feed()
    for i in range(30):
        feed.add(f"later event {i}")
    text = "\n".join(frame(80, 24, feed, DONE))
    assert DONE in text
    assert "later event 29" in text
