"""`nodekeeper audit` (issue 14): the admin changes, newest first, from the real control
plane's audit table; and its renderer at a terminal's width."""

from __future__ import annotations

import json

from nodekeeper.server.audit_view import audit_lines

from .test_api import publish


def test_admin_changes_are_listed_newest_first(server, tmp_path) -> None:
    publish(server, tmp_path, "1.0.0")
    publish(server, tmp_path, "1.1.0")
    server.cli("rollout", "start", "storagenode", "1.1.0")
    server.cli("rollout", "set", "storagenode", "25")
    server.cli("rollout", "pause", "storagenode")
    entries = json.loads(server.cli("audit", "--json").stdout)
    actions = [e["action"] for e in entries]
    assert actions[:3] == ["rollout.pause", "rollout.set", "rollout.start"], actions
    assert actions.count("release.publish") == 2
    assert all(e["remote"] for e in entries)
    text = server.cli("audit", "--limit", "2").stdout.splitlines()
    assert len(text) == 2
    assert "  rollout.pause  by " in text[0] and "percent_after=25.0" in text[0]
    assert "  rollout.set  by " in text[1]
    assert all(len(line) <= 80 for line in text)


def test_a_bad_limit_and_no_server_say_what_to_do(server) -> None:
    bad = server.cli("audit", "--limit", "0", check=False)
    assert bad.returncode == 2 and "whole number from 1 to 10000" in bad.stderr


def test_lines_fit_the_width_and_an_empty_table_says_so() -> None:
    entry = {"at": 1_800_000_000, "action": "rollout_set", "remote": "127.0.0.1 (admin)",
             "detail": {"process": "storagenode", "percent": 25, "note": "x" * 200}}  # fmt: skip
    [line] = audit_lines([entry], width=60)
    assert len(line) == 60 and line.endswith("…") and "rollout_set" in line
    [line] = audit_lines([{**entry, "detail": {"percent": 25}}], width=200)
    assert line.endswith("rollout_set  by 127.0.0.1 (admin)  percent=25")
    assert audit_lines([]) == ["no admin changes recorded yet"]
