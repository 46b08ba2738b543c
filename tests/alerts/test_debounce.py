"""The debounce rules, as pure functions of their inputs, and the state file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nodekeeper.alerts import debounce
from nodekeeper.alerts.debounce import DebouncePolicy, DebounceState

POLICY = DebouncePolicy(interval_seconds=600)


def test_a_key_never_sent_is_sent() -> None:
    assert debounce.should_send(DebounceState(), "crash_loop", 1000.0, POLICY)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (1000.0, False),  # the same instant
        (1000.0 + 1, False),
        (1000.0 + 599.999, False),
        (1000.0 + 600, True),  # exactly the interval
        (1000.0 + 601, True),
        (1000.0 - 1, True),  # the clock was set back: say it rather than stay silent
    ],
)
def test_a_key_sent_at_1000_is_sent_again_only_after_the_interval(
    now: float, expected: bool
) -> None:
    state = debounce.mark_sent(DebounceState(), "crash_loop", 1000.0)
    assert debounce.should_send(state, "crash_loop", now, POLICY) is expected


def test_keys_are_independent() -> None:
    state = debounce.mark_sent(DebounceState(), "crash_loop", 1000.0)
    assert not debounce.should_send(state, "crash_loop", 1001.0, POLICY)
    assert debounce.should_send(state, "disk_full", 1001.0, POLICY)
    assert debounce.should_send(state, "node-a/crash_loop", 1001.0, POLICY)


def test_resolve_lets_the_next_one_through_at_once_and_only_for_its_key() -> None:
    state = debounce.mark_sent(DebounceState(), "crash_loop", 1000.0)
    state = debounce.mark_sent(state, "disk_full", 1000.0)
    resolved = debounce.resolve(state, "crash_loop")
    assert debounce.should_send(resolved, "crash_loop", 1001.0, POLICY)
    assert not debounce.should_send(resolved, "disk_full", 1001.0, POLICY)


def test_resolving_a_key_not_sent_changes_nothing() -> None:
    state = debounce.mark_sent(DebounceState(), "crash_loop", 1000.0)
    assert debounce.resolve(state, "disk_full") is state


def test_a_zero_interval_sends_everything() -> None:
    policy = DebouncePolicy(0)
    state = debounce.mark_sent(DebounceState(), "crash_loop", 1000.0)
    assert debounce.should_send(state, "crash_loop", 1000.0, policy)


@pytest.mark.parametrize("bad", [-1.0, float("inf"), float("nan")])
def test_a_policy_needs_a_finite_non_negative_interval(bad: float) -> None:
    with pytest.raises(ValueError, match="interval_seconds"):
        DebouncePolicy(bad)


def test_states_are_immutable_values() -> None:
    before = DebounceState()
    after = debounce.mark_sent(before, "crash_loop", 1.0)
    assert dict(before.last_sent) == {}
    assert dict(after.last_sent) == {"crash_loop": 1.0}
    with pytest.raises(TypeError):
        after.last_sent["x"] = 2.0  # type: ignore[index]


def test_the_json_form_round_trips() -> None:
    state = debounce.mark_sent(DebounceState(), "crash_loop", 1000.5)
    state = debounce.mark_sent(state, "node-a/disk_full", 7.0)
    assert debounce.from_json(debounce.to_json(state)) == state


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"last_sent": {}}',
        b'{"version": 2, "last_sent": {}}',
        b'{"version": 1, "last_sent": []}',
        b'{"version": 1, "last_sent": {"a": "1"}}',
        b'{"version": 1, "last_sent": {"a": true}}',
        b'{"version": 1, "last_sent": {"a": Infinity}}',
    ],
)
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        debounce.from_json(data)


def test_the_state_file_is_saved_private_and_loaded_back(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    state = debounce.mark_sent(DebounceState(), "crash_loop", 1000.0)
    debounce.save_state(path, state)
    assert debounce.load_state(path) == (state, None)
    assert json.loads(path.read_text())["last_sent"] == {"crash_loop": 1000.0}
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["alerts.json"]  # no temp file left


def test_a_missing_state_file_is_an_empty_state_without_a_complaint(tmp_path: Path) -> None:
    assert debounce.load_state(tmp_path / "none.json") == (DebounceState(), None)


def test_a_damaged_state_file_is_an_empty_state_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    path.write_bytes(b'{"version": 1, "last_se')
    state, problem = debounce.load_state(path)
    assert state == DebounceState()
    assert problem is not None and str(path) in problem and "not JSON" in problem
