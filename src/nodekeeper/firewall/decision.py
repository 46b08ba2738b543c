"""The firewall decision (pure): a target and what the probes recorded → the verdict.

No I/O, no clock (``checked_at`` is passed in), no randomness: the same recorded answers
always give the same verdict, which is how every case is tested (tests/firewall/ with
the recordings in tests/firewall/recorded/). The Windows rules are in
``windows_decision``, the Linux readers in ``linux_decision`` and ``linux_rules``; this
module decides what comes before either: whether there is a port to check at all.
"""

from __future__ import annotations

from nodekeeper.firewall.linux_decision import decide_linux
from nodekeeper.firewall.observations import LinuxObservation, Observation, WindowsObservation
from nodekeeper.firewall.target import Target
from nodekeeper.firewall.verdict import Verdict, unknown_verdict
from nodekeeper.firewall.windows_decision import decide_windows


def decide(target: Target, observation: Observation | None, checked_at: float) -> Verdict:
    """The verdict; ``observation`` None means there was nothing to probe (the target's
    problem says why) or no probe for this system."""
    if target.problem is not None or target.port is None:
        why = target.problem or "the node's port is unknown"
        return unknown_verdict(why, port=target.port, program=target.program, checked_at=checked_at)
    if isinstance(observation, WindowsObservation):
        return decide_windows(target, observation, checked_at)
    if isinstance(observation, LinuxObservation):
        return decide_linux(target, observation, checked_at)
    return unknown_verdict(
        "no firewall check for this operating system (Windows and Linux only)",
        port=target.port,
        program=target.program,
        checked_at=checked_at,
    )
