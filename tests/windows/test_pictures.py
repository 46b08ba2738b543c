"""The reading of the Set up screen from its pixels (tests/windows/pictures.py), on
pictures drawn here the way the runtime's Tk theme draws it under Wine: a helper that
said "drawn" of a half-drawn window would let the Wine tests pass on the bug they are
for."""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageDraw

from tests.windows.pictures import read_wizard

BACKGROUND, BORDER, WHITE, INK = (245, 245, 245), (174, 174, 174), (255, 255, 255), (0, 0, 0)
ROWS = [109 + 46 * row for row in range(6)]  # the fields' tops, as Wine lays them out


def window(fields: int = 6, browse: bool = True, button: bool = True) -> Any:
    image = Image.new("RGB", (784, 560), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rectangle((270, 9, 320, 30), fill=WHITE, outline=BORDER)  # the selected tab
    draw.text((20, 50), "This node is not set up yet. Fill in each field;", fill=INK)
    for row, top in enumerate(ROWS[:fields]):
        draw.text((20, top + 4), f"Field {row}", fill=INK)
        draw.rectangle((144, top - 1, 547, top + 19), fill=WHITE, outline=BORDER)
        if browse and row in (0, 4):  # a button: white face, its label across the middle
            draw.rectangle((551, top - 2, 648, top + 20), fill=WHITE, outline=BORDER)
            draw.text((570, top + 4), "Browse...", fill=INK)
    if button:
        draw.rectangle((21, 505, 132, 529), fill=WHITE, outline=BORDER)
        draw.text((26, 511), "Set up the node", fill=INK)
    return image


def test_the_whole_screen_reads_as_complete() -> None:
    wizard = read_wizard(window())
    assert len(wizard.fields) == 6 and wizard.browse == [0, 4] and wizard.submit is not None
    assert wizard.complete


def test_a_half_drawn_screen_does_not() -> None:
    assert not read_wizard(window(fields=0, browse=False, button=False)).complete  # the bug
    assert not read_wizard(window(button=False)).complete
    assert not read_wizard(window(browse=False)).complete
    assert not read_wizard(window(fields=4)).complete


def test_the_settings_screen_is_not_the_wizard() -> None:
    # Five fields, one Browse... (the storage folder's, on the fourth row).
    image = window(fields=5, browse=False)
    draw = ImageDraw.Draw(image)
    draw.rectangle((551, ROWS[3] - 2, 648, ROWS[3] + 20), fill=WHITE, outline=BORDER)
    assert not read_wizard(image).complete
