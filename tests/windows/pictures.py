"""What the tray app's window shows under Wine, read from its pixels: the Set up screen's
fields and buttons, for tests that start the real app (test_tray_wine, test_msi_wine)
and can only look at the X display.

In the Windows runtime's Tk theme under Wine, an empty Entry is a box of pure white
(255, 255, 255) inside a grey border, 19 pixels high, and a button's face is white
above and below its label; the window's background is (245, 245, 245). So the screen's
widgets show as white boxes: the rows of white runs (bounded by non-white on both
sides) that repeat with the same left and right edges.

A screenshot taken while the window is being drawn for the first time shows some of
them and not others (Wine draws a pane's widgets one by one, over 0.2 s and more on a
loaded machine): ``wait_for_wizard`` waits until every field and button is there, with
a deadline, and keeps the last picture when they never all come.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.xdisplay import screenshot, window_rect

WHITE = (255, 255, 255)
Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive)
FIELDS = 6  # identity folder, wallet, e-mail, external address, storage folder, allocation
BROWSE_ROWS = (0, 4)  # the folders' fields have a Browse... button beside them


def white_boxes(image: Any, min_width: int = 40) -> list[Box]:
    """Boxes of white: runs of white pixels at least ``min_width`` long, bounded by
    non-white, with the same left and right edge on consecutive rows. Top to bottom."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    pixels = rgb.load()
    started: dict[tuple[int, int], int] = {}  # (left, right) -> first row
    boxes: list[Box] = []
    for y in range(height + 1):
        spans: set[tuple[int, int]] = set()
        x = 0
        while y < height and x < width:
            if pixels[x, y] != WHITE:
                x += 1
                continue
            left = x
            while x < width and pixels[x, y] == WHITE:
                x += 1
            if left > 0 and x < width and x - left >= min_width:
                spans.add((left, x))
        for span in [s for s in started if s not in spans]:
            boxes.append((span[0], started.pop(span), span[1], y))
        for span in spans:
            started.setdefault(span, y)
    return sorted(boxes, key=lambda b: (b[1], b[0]))


@dataclass(frozen=True)
class Wizard:
    """The Set up screen as drawn: its fields, the Browse... buttons beside them, and the
    button that sends the form."""

    fields: list[Box]
    browse: list[int]  # the rows (0-based) of the fields with a Browse... button
    submit: Box | None

    @property
    def complete(self) -> bool:
        return (
            len(self.fields) == FIELDS
            and tuple(self.browse) == BROWSE_ROWS
            and self.submit is not None
        )


def read_wizard(image: Any) -> Wizard:
    """The wizard's widgets in a picture of the window (its client area)."""
    boxes = white_boxes(image)
    # A field: a wide white box as tall as an Entry, right of the labels' column (the
    # selected tab and a Wine balloon across the window are not).
    fields = [b for b in boxes if b[0] >= 60 and b[2] - b[0] >= 250 and 14 <= b[3] - b[1] <= 30]
    browse = [
        row
        for row, field in enumerate(fields)
        if any(0 < b[0] - field[2] <= 20 and abs(b[1] - field[1]) <= 3 for b in boxes)
    ]
    # The button under the form, at its left edge: the top of its white face.
    below = fields[-1][3] if fields else image.size[1]
    submit = next(
        (b for b in boxes if b[1] > below and b[0] < 60 and 60 <= b[2] - b[0] <= 250), None
    )
    return Wizard(fields, browse, submit)


@dataclass(frozen=True)
class Shot:
    image: Any  # the window's client area, as much of it as is on the screen
    rect: tuple[int, int, int, int]  # where the window is: x, y, width, height
    wizard: Wizard


def look(display: str, name: str = "nodekeeper") -> Shot | None:
    """The window named ``name`` (its client area) and what it shows; None when it is
    not on the display."""
    rect = window_rect(display, name)
    if rect is None:
        return None
    screen = screenshot(display)
    x, y, width, height = rect
    box = (max(0, x), max(0, y), min(screen.width, x + width), min(screen.height, y + height))
    image = screen.crop(box)
    return Shot(image, rect, read_wizard(image))


def wait_for_wizard(display: str, timeout: float, keep: Path) -> Shot:
    """The window once the Set up screen's fields and buttons are all drawn. At the
    deadline the last picture is saved as ``keep`` and the failure names it."""
    deadline = time.monotonic() + timeout
    last: Shot | None = None
    while True:
        last = look(display) or last
        if last is not None and last.wizard.complete:
            return last
        if time.monotonic() > deadline:
            if last is not None:
                last.image.save(keep)
            raise AssertionError(
                f"the Set up screen was not drawn whole within {timeout:g} s: last seen "
                f"{last.wizard if last else 'no window'} ({keep if last else 'no picture'})"
            )
        time.sleep(0.2)
