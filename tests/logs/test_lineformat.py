import json
import logging
import os
import time

import pytest

from nodekeeper.logs.lineformat import LocalTimestamps, json_formatter, text_formatter

TS = 1_795_761_259.25  # 2026-11-27T06:34:19.250Z


@pytest.fixture
def tz():
    old = os.environ.get("TZ")

    def use(name):
        os.environ["TZ"] = name
        time.tzset()

    yield use
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_text_line_has_time_level_source_message(tz):
    tz("UTC")
    line = text_formatter()(TS, logging.ERROR, "storagenode", "upload failed")
    assert line == "2026-11-27T06:34:19.250Z ERROR    storagenode upload failed\n"


def test_local_time_carries_its_offset(tz):
    tz("Asia/Kolkata")
    assert LocalTimestamps()(TS) == "2026-11-27T12:04:19.250+05:30"
    tz("America/New_York")
    assert LocalTimestamps()(TS) == "2026-11-27T01:34:19.250-05:00"


def test_cache_follows_the_second(tz):
    tz("UTC")
    stamp = LocalTimestamps()
    assert [stamp(t) for t in (TS, TS + 0.5, TS + 1, TS - 10)] == [
        "2026-11-27T06:34:19.250Z",
        "2026-11-27T06:34:19.750Z",
        "2026-11-27T06:34:20.250Z",
        "2026-11-27T06:34:09.250Z",
    ]


def test_multiline_messages_stay_one_entry(tz):
    tz("UTC")
    line = text_formatter()(TS, logging.ERROR, "keeper", "boom\nTraceback:\r\n  File x")
    assert line.count("\n") == 3
    rest = line.splitlines()[1:]
    assert all(part.startswith("    ") for part in rest)


def test_unusual_levels_are_named():
    line = text_formatter()(TS, 25, "keeper", "m")
    assert " LEVEL25 " in line


def test_json_lines(tz):
    tz("UTC")
    line = json_formatter()(TS, logging.WARNING, "storagenode", 'quote " and ünïcode\nnext')
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == {
        "time": "2026-11-27T06:34:19.250Z",
        "level": "WARNING",
        "source": "storagenode",
        "message": 'quote " and ünïcode\nnext',
    }
