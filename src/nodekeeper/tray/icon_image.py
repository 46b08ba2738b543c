"""The tray icon's picture (pure: a Pillow image from a colour and an unread count).

A filled circle in the state's colour (``icon_state.COLOURS``) with a thin white ring, so
it stands out on dark and light taskbars alike; with unread problems, a white badge in
the top-right corner carrying the count ("9+" beyond nine: a notification area icon is
16-32 pixels on screen, two digits are the most that stay legible).

The image is drawn at 64 x 64 and scaled down by the platform (pystray writes it to an
ICO on Windows and scales it to the tray's slot on X11): drawing small would leave it
blurry on high-DPI screens.
"""

from __future__ import annotations

from PIL import Image, ImageColor, ImageDraw, ImageFont

SIZE = 64
RING = (255, 255, 255, 255)
BADGE = (255, 255, 255, 255)
BADGE_TEXT_MAX = 9  # above this the badge says "9+"


def badge_text(unread: int) -> str:
    """What the badge says: the count, "9+" beyond nine, "" for none."""
    if unread < 0:
        raise ValueError(f"an unread count cannot be negative, got {unread}")
    if unread == 0:
        return ""
    return str(unread) if unread <= BADGE_TEXT_MAX else f"{BADGE_TEXT_MAX}+"


def icon_image(colour: str, unread: int = 0, size: int = SIZE) -> Image.Image:
    """The icon: a ``colour`` disc, with the unread badge when ``unread`` > 0."""
    if size < 16:
        raise ValueError(f"an icon of {size} px is too small to draw; use 16 px or more")
    try:
        fill = ImageColor.getrgb(colour)
    except ValueError:
        raise ValueError(
            f"not a colour: {colour!r} (give '#rrggbb' or a name Pillow knows)"
        ) from None
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    margin = max(1, size // 16)
    ring = max(1, size // 21)
    draw.ellipse((margin, margin, size - 1 - margin, size - 1 - margin), fill=RING)
    inner = margin + ring
    draw.ellipse((inner, inner, size - 1 - inner, size - 1 - inner), fill=fill)
    text = badge_text(unread)
    if text:
        _badge(draw, size, text, fill)
    return image


def badge_box(size: int) -> tuple[int, int, int, int]:
    """Where the badge goes: the top-right corner, a bit over a third of the icon."""
    diameter = size * 7 // 16
    return (size - diameter, 0, size - 1, diameter - 1)


def _badge(draw: ImageDraw.ImageDraw, size: int, text: str, colour: tuple[int, ...]) -> None:
    left, top, right, bottom = badge_box(size)
    draw.ellipse((left, top, right, bottom), fill=BADGE, outline=colour[:3], width=1)
    font = _font(max(8, (bottom - top) * (3 if len(text) == 1 else 2) // 4))
    # Centred by its ink box (anchors work only with FreeType fonts).
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    x = (left + right + 1 - (x1 - x0)) / 2 - x0
    y = (top + bottom + 1 - (y1 - y0)) / 2 - y0
    draw.text((x, y), text, fill=colour[:3], font=font)


def _font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's built-in font, scalable when Pillow has FreeType (its wheels do on
    # Windows and Linux); the fixed bitmap one otherwise, which still fits one digit.
    try:
        return ImageFont.load_default(size=pixels)
    except (ImportError, OSError, TypeError):
        return ImageFont.load_default()
