"""The supervisor's states and the only transitions between them (pure, no I/O).

The supervisor never assigns a state directly; it sends an :class:`Event` through
:func:`transition`, so an impossible sequence (a probe result for a node that is not
running, say) is a loud bug instead of a status page that lies.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    STARTING = "starting"  # spawned, inside the start grace period, not yet healthy
    RUNNING = "running"  # healthy (probe passed, or process-only probe and alive)
    STOPPING = "stopping"  # graceful stop sent, waiting for the exit (then tree kill)
    STOPPED = "stopped"  # not running: before the first start, waiting out a backoff, or shut down
    NEEDS_SETUP = "needs-setup"  # the node says it is not set up; rechecked now and then
    CRASH_LOOP = "crash-loop"  # waiting out a backoff after too many failures in the window
    HUNG = "hung"  # the probe failed past its threshold; being stopped and killed


class Event(StrEnum):
    SPAWNED = "spawned"
    PROBE_OK = "probe-ok"
    PROBE_HUNG = "probe-hung"
    STOP = "stop"  # keeper shutdown, or a soft-limit restart
    EXITED = "exited"  # the node exited, and the keeper will start it again later
    EXITED_LOOPING = "exited-looping"  # the same, with the crash-loop flag raised
    EXITED_NOT_SET_UP = "exited-not-set-up"
    SHUT_DOWN = "shut-down"  # exited for good: the keeper itself is stopping


class InvalidTransition(RuntimeError):
    pass


_ALIVE = (State.STARTING, State.RUNNING, State.STOPPING, State.HUNG)
_WAITING = (State.STOPPED, State.NEEDS_SETUP, State.CRASH_LOOP)

_TABLE: dict[tuple[State, Event], State] = {}
for _s in _WAITING:
    _TABLE[(_s, Event.SPAWNED)] = State.STARTING
    # Shutting down while nothing runs is allowed and lands in STOPPED.
    _TABLE[(_s, Event.SHUT_DOWN)] = State.STOPPED
for _s in (State.STARTING, State.RUNNING):
    _TABLE[(_s, Event.PROBE_OK)] = State.RUNNING
    _TABLE[(_s, Event.PROBE_HUNG)] = State.HUNG
    _TABLE[(_s, Event.STOP)] = State.STOPPING
# A hung node being killed may also be asked to stop by a keeper shutdown: it stays HUNG
# (the stop already in progress is the same stop), as does a second STOP while STOPPING.
_TABLE[(State.HUNG, Event.STOP)] = State.HUNG
_TABLE[(State.STOPPING, Event.STOP)] = State.STOPPING
for _s in _ALIVE:
    _TABLE[(_s, Event.EXITED)] = State.STOPPED
    _TABLE[(_s, Event.EXITED_LOOPING)] = State.CRASH_LOOP
    _TABLE[(_s, Event.EXITED_NOT_SET_UP)] = State.NEEDS_SETUP
    _TABLE[(_s, Event.SHUT_DOWN)] = State.STOPPED

TRANSITIONS: dict[tuple[State, Event], State] = dict(_TABLE)


def transition(state: State, event: Event) -> State:
    """The state after ``event`` in ``state``; raises :class:`InvalidTransition` otherwise."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(f"{event.value} is not possible in state {state.value}") from None


def is_alive(state: State) -> bool:
    """True in the states where a node process exists."""
    return state in _ALIVE
