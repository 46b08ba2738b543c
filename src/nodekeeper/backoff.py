"""Waiting after failures, the one way every loop of the keeper does it.

The supervisor's restarts, the update checks and the report sender all double a delay
after each failure up to a cap, and the last two honour a server's ``Retry-After``. Each
adds its own jitter and rules around these two pure functions.
"""

from __future__ import annotations

import email.utils

# 2**64 times any delay is past every cap; capping the exponent avoids float overflow
# for a loop that has failed for months.
_MAX_EXPONENT = 64


def doubling(step: int, initial: float, maximum: float) -> float:
    """``initial`` × 2**``step``, never above ``maximum`` (step 0 → ``initial``)."""
    if step < 0:
        raise ValueError(f"step must be >= 0 (got {step})")
    return min(maximum, initial * 2.0 ** min(step, _MAX_EXPONENT))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from ``now`` (Unix time) that a ``Retry-After`` header asks for.

    Both RFC 9110 forms: delta-seconds (``120``) and an HTTP-date. A date in the past is
    0; anything unparseable is None (ignored: the caller's own backoff applies).
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means "-0000"
        return None
    return max(0.0, when.timestamp() - now)
