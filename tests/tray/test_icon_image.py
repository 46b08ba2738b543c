"""The tray icon's picture (pure): the state's colour, a transparent outside, the badge."""

from __future__ import annotations

import pytest

from nodekeeper.tray.icon_image import SIZE, badge_box, badge_text, icon_image
from nodekeeper.tray.icon_state import COLOURS

WHITE = (255, 255, 255, 255)


def rgb(colour: str) -> tuple[int, int, int, int]:
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16), 255)


@pytest.mark.parametrize("kind", sorted(COLOURS))
def test_each_state_is_a_disc_of_its_colour_on_a_transparent_square(kind: str) -> None:
    image = icon_image(COLOURS[kind])
    assert image.size == (SIZE, SIZE) and image.mode == "RGBA"
    assert image.getpixel((SIZE // 2, SIZE // 2)) == rgb(COLOURS[kind])
    for corner in ((0, 0), (SIZE - 1, 0), (0, SIZE - 1), (SIZE - 1, SIZE - 1)):
        assert image.getpixel(corner)[3] == 0  # transparent: the taskbar shows through
    # The white ring between the disc and the outside, for dark and light taskbars.
    assert image.getpixel((SIZE // 2, SIZE // 16 + 1)) == WHITE


def test_the_colours_tell_the_states_apart() -> None:
    centres = {icon_image(c).getpixel((SIZE // 2, SIZE // 2)) for c in COLOURS.values()}
    assert len(centres) == len(COLOURS)


@pytest.mark.parametrize(("unread", "text"), [(0, ""), (1, "1"), (9, "9"), (10, "9+"), (250, "9+")])
def test_the_badge_says_the_count_up_to_nine(unread: int, text: str) -> None:
    assert badge_text(unread) == text


def test_a_badge_appears_with_unread_problems_and_carries_ink() -> None:
    colour = COLOURS["attention"]
    plain, badged = icon_image(colour), icon_image(colour, unread=3)
    left, top, right, bottom = badge_box(SIZE)
    region = badged.crop((left, top, right + 1, bottom + 1))
    pixels = [region.getpixel((x, y)) for x in range(region.width) for y in range(region.height)]
    assert pixels.count(WHITE) > len(pixels) // 4  # the white badge
    assert rgb(colour)[:3] in {p[:3] for p in pixels}  # the digit, in the state's colour
    assert plain.crop((left, top, right + 1, bottom + 1)).tobytes() != region.tobytes()
    # The disc's centre keeps the state's colour: the badge sits in the corner.
    assert badged.getpixel((SIZE // 3, SIZE * 2 // 3)) == rgb(colour)
    # Different counts draw differently (the digit is there, not only a dot).
    assert icon_image(colour, unread=1).tobytes() != icon_image(colour, unread=7).tobytes()


@pytest.mark.parametrize("size", [16, 32, 256])
def test_other_sizes_draw_the_same_picture(size: int) -> None:
    image = icon_image(COLOURS["running"], unread=2, size=size)
    assert image.size == (size, size)
    assert image.getpixel((size // 3, size * 2 // 3)) == rgb(COLOURS["running"])


def test_bad_input_says_what_was_wrong() -> None:
    with pytest.raises(ValueError, match=r"not a colour: 'greenish'"):
        icon_image("greenish")
    with pytest.raises(ValueError, match=r"too small"):
        icon_image("#000000", size=8)
    with pytest.raises(ValueError, match=r"cannot be negative"):
        icon_image("#000000", unread=-1)
