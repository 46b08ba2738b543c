"""Whether an alert may be sent now: at most one per key per interval, until resolved.

Pure: the state is an immutable map from an alert's key (``Alert.key``) to the time of
the last send, and every function returns a new state. A keeper restart must not send
again what it sent a minute before dying, so the state is also a small JSON file
(``load_state`` / ``save_state``, written durably: whole or absent after a power cut).

The rules, for one key:
- never sent, or resolved since the last send: send;
- sent at least ``interval_seconds`` ago: send (the problem is still there; say so again);
- sent less than that ago: suppress;
- the clock says the last send is in the future (the clock was set back): send, rather
  than stay silent until the clock catches up.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from nodekeeper.durable import write_durably

STATE_VERSION = 1


@dataclass(frozen=True)
class DebouncePolicy:
    interval_seconds: float

    def __post_init__(self) -> None:
        if not (self.interval_seconds >= 0 and math.isfinite(self.interval_seconds)):
            raise ValueError("interval_seconds must be a finite number ≥ 0")


@dataclass(frozen=True)
class DebounceState:
    last_sent: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "last_sent", MappingProxyType(dict(self.last_sent)))


def should_send(state: DebounceState, key: str, now: float, policy: DebouncePolicy) -> bool:
    last = state.last_sent.get(key)
    if last is None or now < last:
        return True
    return now - last >= policy.interval_seconds


def mark_sent(state: DebounceState, key: str, now: float) -> DebounceState:
    return DebounceState({**state.last_sent, key: now})


def resolve(state: DebounceState, key: str) -> DebounceState:
    """The problem cleared: the next alert of ``key`` goes out at once."""
    if key not in state.last_sent:
        return state
    return DebounceState({k: v for k, v in state.last_sent.items() if k != key})


def to_json(state: DebounceState) -> bytes:
    body = {"version": STATE_VERSION, "last_sent": dict(sorted(state.last_sent.items()))}
    return json.dumps(body, indent=1).encode() + b"\n"


def from_json(data: bytes) -> DebounceState:
    """Parse a state file; raises ValueError for anything that is not one."""
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("version") != STATE_VERSION:
        raise ValueError(f"not a version {STATE_VERSION} debounce state")
    last_sent = body.get("last_sent")
    if not isinstance(last_sent, dict):
        raise ValueError("last_sent is not an object")
    out: dict[str, float] = {}
    for key, value in last_sent.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"last_sent[{key!r}] is not a number")
        if not math.isfinite(value):
            raise ValueError(f"last_sent[{key!r}] is not finite")
        out[key] = float(value)
    return DebounceState(out)


def load_state(path: Path) -> tuple[DebounceState, str | None]:
    """The saved state, and why it was not usable if it was not (missing is normal and
    gives no reason). A damaged file costs at most one repeated alert per key, so it is
    never an error: the caller logs the reason and starts empty."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return DebounceState(), None
    except OSError as exc:
        return DebounceState(), f"{path}: cannot read: {exc.strerror or exc}"
    try:
        return from_json(data), None
    except ValueError as exc:
        return DebounceState(), f"{path}: {exc}"


def save_state(path: Path, state: DebounceState) -> None:
    write_durably(path, to_json(state), mode=0o600)
