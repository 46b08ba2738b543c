"""The tray's pure parts: what is unread against "last seen", the list's order and
filters, and the per-user last-seen file (real files, an index written by the keeper's
own ErrorIndex)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from nodekeeper.logs import ErrorIndex
from nodekeeper.logs.error_index import read_errors_since
from nodekeeper.logs.settings import LogSettings
from nodekeeper.tray import last_seen
from nodekeeper.tray.unread import newest_time, problems, shown, unread


def entry(ts: float, source: str = "keeper", level: str = "ERROR", **extra: object) -> dict:
    return {"timestamp": ts, "time": f"t{ts:g}", "source": source, "level": level,
            "message": f"m{ts:g}", **extra}  # fmt: skip


def test_newest_first_and_unread_is_what_is_newer_than_last_seen() -> None:
    items = problems([entry(1), entry(3), entry(2)])
    assert [p.timestamp for p in items] == [3, 2, 1]
    assert [p.timestamp for p in unread(items, 1)] == [3, 2]
    assert unread(items, 3) == [] and len(unread(items, 0)) == 3
    assert newest_time(items) == 3 and newest_time([]) is None


def test_damaged_entries_are_left_out_and_extra_fields_kept_as_details() -> None:
    items = problems([entry(1, fix="free some space", disk="D:"), {"timestamp": "x"}, {}])
    assert len(items) == 1
    assert items[0].fix == "free some space" and items[0].details == {"disk": "D:"}
    text = items[0].for_forum()
    assert "What to do: free some space" in text and "disk: D:" in text


def test_a_nodes_json_line_shows_its_message_and_keeps_the_rest_as_details() -> None:
    line = json.dumps({"time": "2026-12-03T07:00:00Z", "level": "ERROR",
                       "msg": "database is locked", "piece": "abc"})  # fmt: skip
    [item] = problems([{**entry(1, "node"), "message": line}])
    assert item.message == "database is locked"
    assert item.details == {"node time": "2026-12-03T07:00:00Z", "node piece": "abc"}
    # Anything else is shown as it was written: plain text, JSON without a message, a
    # JSON list, a damaged line.
    for text in ("plain {x}", '{"level": "ERROR"}', "[1, 2]", '{"msg": ', '{"msg": 3}'):
        [kept] = problems([{**entry(1, "node"), "message": text}])
        assert (kept.message, kept.details) == (text, {})


def test_filters_by_source_and_minimum_severity() -> None:
    items = problems([entry(1, "node", "WARNING"), entry(2, "updater", "ERROR"),
                      entry(3, "keeper", "CRITICAL")])  # fmt: skip
    assert [p.source for p in shown(items)] == ["keeper", "updater", "node"]
    assert [p.source for p in shown(items, min_level="error")] == ["keeper", "updater"]
    assert [p.source for p in shown(items, {"node", "updater"})] == ["updater", "node"]
    with pytest.raises(ValueError, match="unknown severity"):
        shown(items, min_level="loud")


def test_last_seen_survives_only_moves_forward_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / last_seen.FILE_NAME
    assert last_seen.load(path) == 0.0  # nothing seen yet: everything is unread
    assert last_seen.save(path, 10.5) == 10.5
    assert last_seen.load(path) == 10.5
    assert last_seen.save(path, 7.0) == 10.5  # another window saw more already
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for garbage in ("", "{", json.dumps({"last_seen": "soon"}), json.dumps({"last_seen": -1})):
        path.write_text(garbage)
        assert last_seen.load(path) == 0.0
    with pytest.raises(ValueError, match="time in seconds"):
        last_seen.save(path, float("nan"))


def test_unread_from_the_keepers_own_index(tmp_path: Path) -> None:
    index = ErrorIndex(tmp_path, LogSettings())
    for n in range(3):
        index.record("keeper", "ERROR", f"problem {n}", timestamp=100.0 * (n + 1))
    index.close()
    items = problems(read_errors_since(tmp_path, 0))
    assert [p.message for p in items] == ["problem 2", "problem 1", "problem 0"]
    seen = tmp_path / "user" / last_seen.FILE_NAME
    last_seen.save(seen, 200.0)
    assert [p.message for p in unread(items, last_seen.load(seen))] == ["problem 2"]
