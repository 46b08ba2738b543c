"""Every (state, event) pair: the allowed ones land where they should, the rest raise."""

from __future__ import annotations

import itertools

import pytest

from nodekeeper.keeper.states import (
    TRANSITIONS,
    Event,
    InvalidTransition,
    State,
    is_alive,
    transition,
)

EXPECTED = {
    (State.STOPPED, Event.SPAWNED): State.STARTING,
    (State.NEEDS_SETUP, Event.SPAWNED): State.STARTING,
    (State.CRASH_LOOP, Event.SPAWNED): State.STARTING,
    (State.STOPPED, Event.SHUT_DOWN): State.STOPPED,
    (State.NEEDS_SETUP, Event.SHUT_DOWN): State.STOPPED,
    (State.CRASH_LOOP, Event.SHUT_DOWN): State.STOPPED,
    (State.STARTING, Event.PROBE_OK): State.RUNNING,
    (State.RUNNING, Event.PROBE_OK): State.RUNNING,
    (State.STARTING, Event.PROBE_HUNG): State.HUNG,
    (State.RUNNING, Event.PROBE_HUNG): State.HUNG,
    (State.STARTING, Event.STOP): State.STOPPING,
    (State.RUNNING, Event.STOP): State.STOPPING,
    (State.STOPPING, Event.STOP): State.STOPPING,
    (State.HUNG, Event.STOP): State.HUNG,
}
for alive in (State.STARTING, State.RUNNING, State.STOPPING, State.HUNG):
    EXPECTED[(alive, Event.EXITED)] = State.STOPPED
    EXPECTED[(alive, Event.EXITED_LOOPING)] = State.CRASH_LOOP
    EXPECTED[(alive, Event.EXITED_NOT_SET_UP)] = State.NEEDS_SETUP
    EXPECTED[(alive, Event.SHUT_DOWN)] = State.STOPPED


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_every_pair(state: State, event: Event) -> None:
    if (state, event) in EXPECTED:
        assert transition(state, event) is EXPECTED[(state, event)]
    else:
        with pytest.raises(InvalidTransition, match=event.value):
            transition(state, event)


def test_table_is_exactly_the_expected_one() -> None:
    assert TRANSITIONS == EXPECTED


def test_state_names_are_the_status_api_names() -> None:
    assert {s.value for s in State} == {
        "starting", "running", "stopping", "stopped", "needs-setup", "crash-loop", "hung",
    }  # fmt: skip


def test_alive_states_are_those_with_a_process() -> None:
    assert {s for s in State if is_alive(s)} == {
        State.STARTING, State.RUNNING, State.STOPPING, State.HUNG,
    }  # fmt: skip


def test_a_full_life() -> None:
    state = State.STOPPED
    for event in (Event.SPAWNED, Event.PROBE_OK, Event.PROBE_HUNG, Event.EXITED, Event.SPAWNED,
                  Event.EXITED_LOOPING, Event.SPAWNED, Event.EXITED_NOT_SET_UP, Event.SPAWNED,
                  Event.PROBE_OK, Event.STOP, Event.SHUT_DOWN):  # fmt: skip
        state = transition(state, event)
    assert state is State.STOPPED
