"""The structured stderr lines the keeper parses."""

from __future__ import annotations

import json
import logging
import re
import sys

from storagenode.log import JsonLineFormatter


def _line(level: int, msg: str, **kwargs: object) -> dict[str, object]:
    record = logging.LogRecord("storagenode", level, __file__, 1, msg, None, None)
    for key, value in kwargs.items():
        setattr(record, key, value)
    text = JsonLineFormatter().format(record)
    assert "\n" not in text
    return json.loads(text)


def test_every_line_has_time_level_msg() -> None:
    line = _line(logging.WARNING, "disk nearly full", fields={"free": 10, "msg": "ignored"})
    assert line["level"] == "WARNING" and line["msg"] == "disk nearly full"
    assert line["free"] == 10
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(line["time"]))


def test_critical_is_reported_as_error_and_exceptions_stay_on_one_line() -> None:
    assert _line(logging.CRITICAL, "x")["level"] == "ERROR"
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        line = _line(logging.ERROR, "failed", exc_info=sys.exc_info())
    assert "ValueError: boom" in str(line["error"])


def test_non_ascii_is_escaped() -> None:
    msg = "dir C:\\Données"
    record = logging.LogRecord("storagenode", logging.INFO, __file__, 1, msg, None, None)
    text = JsonLineFormatter().format(record)
    assert text.isascii() and json.loads(text)["msg"] == msg
