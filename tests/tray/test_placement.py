"""Where the window opens (tray/placement.py): 800x600 where it fits with its frame,
smaller and still whole on a small screen, centred in the usable part of the screen."""

from __future__ import annotations

import pytest

from nodekeeper.tray.placement import FRAME_HEIGHT, FRAME_WIDTH, Area, Placement, fit


def inside(where: Placement, work: Area) -> bool:
    """The window with its frame inside ``work``."""
    return (
        where.x >= work.left
        and where.y >= work.top
        and where.x + where.width + FRAME_WIDTH <= work.left + work.width
        and where.y + where.height + FRAME_HEIGHT <= work.top + work.height
    )


def test_a_large_screen_gets_800x600_centred() -> None:
    where = fit(Area(0, 0, 1920, 1040))  # 1080p without a 40-pixel taskbar
    assert (where.width, where.height) == (800, 600)
    assert where.geometry == "800x600+552+200"
    assert (where.min_width, where.min_height) == (640, 480)


@pytest.mark.parametrize(
    "work",
    [
        Area(0, 0, 800, 600),  # Wine on the tests' Xvfb: no taskbar
        Area(0, 0, 800, 560),  # an 800x600 Windows desktop with its taskbar at the bottom
        Area(0, 40, 800, 560),  # ... and with the taskbar at the top
        Area(0, 0, 1024, 728),  # 1024x768 less a taskbar
        Area(1920, 0, 1366, 728),  # a second monitor to the right
    ],
)
def test_small_screens_get_a_window_that_fits_whole(work: Area) -> None:
    where = fit(work)
    assert inside(where, work), where
    assert where.width <= 800 and where.height <= 600
    # Never smaller than the screens' wrap lengths need, where the screen has that room.
    assert where.width >= min(776, work.width - FRAME_WIDTH)
    assert where.min_width <= where.width and where.min_height <= where.height


def test_an_800x600_desktop_loses_height_only_to_the_frame_and_taskbar() -> None:
    where = fit(Area(0, 0, 800, 560))
    assert where.geometry == "784x520+0+0"
    assert (where.min_width, where.min_height) == (640, 480)


def test_a_screen_smaller_than_the_minimum_lowers_the_minimum() -> None:
    where = fit(Area(0, 0, 640, 480))
    assert (where.width, where.height) == (624, 440)
    assert (where.min_width, where.min_height) == (624, 440)


def test_the_systems_own_frame_is_used_when_given() -> None:
    # Wine's frame (4-pixel borders, a 19-pixel caption) on its 800x600 virtual desktop:
    # the whole window is exactly the desktop.
    where = fit(Area(0, 0, 800, 600), frame=(8, 27))
    assert where.geometry == "792x573+0+0"
