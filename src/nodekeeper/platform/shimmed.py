"""What every platform does the same way with a node under a node shim (decision 063):
start the shim and attach, re-attach to a recorded one after a hand-over, and the handle
parts that come from the attachment (output, exit, detach). The platforms keep what
differs: the cgroup or the Job Object, signals, usage.

The shim client (``multiprocessing.connection``, ~1.7 MB) is imported lazily: only a
keeper under the launcher loads it, and the idle keeper's memory target counts imports.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodekeeper.nodeshim import protocol
from nodekeeper.platform.base import MECH_NONE, AdoptionRefused, LaunchSpec, LimitReport

if TYPE_CHECKING:
    from nodekeeper.platform.shim_client import Attachment, Started


@dataclass(frozen=True)
class ShimOptions:
    """Start each node under a node shim: the keeper runs under the launcher, so the node
    may outlive a hand-over. ``anchor_pid`` is the launcher: the node never outlives it."""

    anchor_pid: int
    state_dir: Path  # the shims' start specs (removed once read) and their log
    stop_timeout: float  # the shim's graceful stop when the launcher is gone


_spec_numbers = itertools.count()


async def start_attached(
    options: ShimOptions,
    spec: LaunchSpec,
    limit: int,
    *,
    child: protocol.ChildSetup | None = None,
    job: protocol.JobSpec | None = None,
) -> tuple[Started, Attachment]:
    """Start a shim running ``spec``'s node and attach to it. OSError (ShimError) when the
    node cannot be started; the shim then has already exited."""
    from nodekeeper.platform.shim_client import attach, start_shim

    shim_spec = protocol.ShimSpec(
        argv=list(spec.argv),
        env=dict(spec.env),
        cwd=str(spec.cwd) if spec.cwd is not None else None,
        address=protocol.new_address(spec.name),
        authkey_hex=os.urandom(32).hex(),
        anchor_pid=options.anchor_pid,
        stop_timeout=options.stop_timeout,
        log_path=str(options.state_dir / "node-shim.log"),
        child=child or protocol.ChildSetup(),
        job=job,
    )
    options.state_dir.mkdir(parents=True, exist_ok=True)
    spec_path = options.state_dir / f"node-shim-{os.getpid()}-{next(_spec_numbers)}.json"
    started = await asyncio.to_thread(start_shim, shim_spec, spec_path)
    attachment = await attach(started.address, started.authkey_hex, limit)
    return started, attachment


async def attach_recorded(identity: Mapping[str, Any], limit: int) -> Attachment:
    """Attach to the shim a predecessor recorded, and check that it still runs the very
    node of the record (pid and OS start time); AdoptionRefused otherwise."""
    shim = identity.get("shim")
    if not isinstance(shim, Mapping):
        raise AdoptionRefused("the node was not started under a node shim")
    from nodekeeper.platform.shim_client import ShimError, attach

    try:
        expect = {"node_pid": int(identity.get("pid", 0)), "node_start": int(shim["node_start"])}
        return await attach(str(shim["address"]), str(shim["authkey_hex"]), limit, expect)
    except (ShimError, KeyError, TypeError, ValueError) as exc:
        raise AdoptionRefused(str(exc)) from None


def recorded_limits(identity: Mapping[str, Any]) -> LimitReport:
    """The limit report a predecessor recorded with the node (the limits are the node's
    since its start: a hand-over does not change them)."""
    limits = identity.get("limits") or {}
    return LimitReport(
        memory_hard=limits.get("memory_hard", MECH_NONE),
        cpu_rate=limits.get("cpu_rate", MECH_NONE),
        affinity=limits.get("affinity", MECH_NONE),
        priority=limits.get("priority", MECH_NONE),
        notes=tuple(limits.get("notes", ())),
    )


class ShimAttached:
    """The handle parts that come from the shim: the node's output and exit, and the
    detach of a hand-over. Mixed into each platform's shimmed handle."""

    attachment: Attachment

    def _take_attachment(self, attachment: Attachment) -> None:
        self.attachment = attachment
        self.pid = attachment.node_pid
        self.stdout = attachment.stdout
        self.stderr = attachment.stderr

    @property
    def returncode(self) -> int | None:
        return self.attachment.returncode

    async def wait(self) -> int:
        return await self.attachment.wait()

    def detach(self) -> bool:
        if not self.attachment.detach():
            return False
        self.attachment.end_output()
        return True

    def shim_record(self) -> dict[str, Any]:
        """What the next keeper needs to find and verify the node (``attach_recorded``)."""
        return {
            "pid": self.attachment.shim_pid,
            "address": self.attachment.address,
            "authkey_hex": self.attachment.authkey_hex,
            "node_start": self.attachment.node_start,
        }
