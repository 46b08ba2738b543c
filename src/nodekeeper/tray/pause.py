"""The Updates screen's inputs read into what the keeper takes (pure): a pause "until..."
as UNIX seconds, and the quiet window checked by the updater's own parser."""

from __future__ import annotations

from datetime import datetime, timedelta

from nodekeeper.updater.maintenance import QuietWindow

UNTIL_FORMS = "YYYY-MM-DD HH:MM, or HH:MM for the next time it is that time"


def parse_until(text: str, now: datetime) -> datetime:
    """``"2025-05-01 08:00"`` or ``"08:00"`` (the next 08:00 after ``now``), local time;
    ValueError says what is wrong. The time must be in the future."""
    value = " ".join(text.split())
    if not value:
        raise ValueError(f"write when updates may start again: {UNTIL_FORMS}")
    try:
        if " " in value:
            moment = datetime.strptime(value, "%Y-%m-%d %H:%M")
        else:
            clock = datetime.strptime(value, "%H:%M")
            moment = now.replace(hour=clock.hour, minute=clock.minute, second=0, microsecond=0)
            if moment <= now:
                moment += timedelta(days=1)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a time: write {UNTIL_FORMS}") from None
    if moment <= now:
        raise ValueError(f"{value} has passed: write a time in the future")
    return moment


def check_window(text: str) -> str | None:
    """The quiet window to send: None (clear it) for an empty field, else ``HH:MM-HH:MM``
    as the keeper parses it; ValueError with the keeper's own words otherwise."""
    value = text.strip()
    if not value:
        return None
    window = QuietWindow.parse(value)
    return f"{window.start:%H:%M}-{window.end:%H:%M}"
