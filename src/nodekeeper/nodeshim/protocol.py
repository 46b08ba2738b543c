"""What a keeper and a node shim say to each other.

This is an interface between programs of different releases: a shim started by keeper
1.0 is attached by keeper 1.1 after a hand-over. So, as in ``launcher/protocol.py``: a
new key in a message is fine (both sides ignore keys they do not know), a new meaning
needs a new ``FORMAT``, and a keeper that does not know the shim's format restarts the
node instead of guessing (decision 063).

Transport: ``multiprocessing.connection`` (an AF_UNIX socket in Linux's abstract
namespace, a named pipe on Windows), authenticated with the HMAC challenge of
``authkey`` before anything is read; messages are dicts of str, int, bytes and lists.

Keeper → shim:
- ``{"op": "attach"}``: answered by ``hello``; from then on the shim sends what the
  node writes, oldest first, and its exit. With ``"expect": {"node_pid", "node_start"}``
  (a keeper adopting a recorded node), a shim whose node is another one answers hello
  and closes: nothing leaves its backlog, the attached keeper keeps its place;
- ``{"op": "detach"}``: answered by ``detached``, after which the shim sends nothing more
  on this connection; what the node writes next waits for the next keeper;
- ``{"op": "stop"}``: the node's graceful stop signal, sent by the shim (SIGTERM to its
  process group; on Windows CTRL_BREAK, which only a process on the node's console can
  send). No answer: the exit follows when the node has stopped. A shim whose hello does
  not list it in ``ops`` predates it.

Shim → keeper:
- ``{"ev": "hello", "format", "shim_pid", "node_pid", "node_start", "ops"}``:
  ``node_start`` is the node's start time as the OS counts it (Linux: clock ticks since
  boot from ``/proc/PID/stat``; Windows: the creation FILETIME), so a keeper can tell the
  node from a process with a reused pid; ``ops`` lists the ops this shim understands;
- ``{"ev": "lines", "stream": "stdout"|"stderr", "first_seq", "lines": [bytes, ...]}``:
  whole lines, each ending in ``\\n`` except the last before the stream ended;
- ``{"ev": "dropped", "count"}``: lines lost while no keeper was attached (the backlog
  was full);
- ``{"ev": "exit", "code"}``: the node exited (negative: killed by that signal); the
  last message of a connection, after every line;
- ``{"ev": "detached", "next_seq"}``: the answer to ``detach``.

The spec the keeper gives the shim at start is a JSON file (0600: the node's
environment may hold secrets), see ``ShimSpec``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT = 1

# Longest line relayed whole; longer ones are cut (as the keeper's own reader does).
MAX_LINE = 1024 * 1024
# Output kept while no keeper is attached (a hand-over takes about a second; a keeper
# that crashed is restarted within its backoff).
BACKLOG_BYTES = 8 * 1024 * 1024
# Lines per message: small enough to keep a detach prompt.
LINES_PER_MESSAGE = 256

ATTACH = "attach"
DETACH = "detach"
STOP = "stop"
OPS = (ATTACH, DETACH, STOP)
HELLO = "hello"
LINES = "lines"
DROPPED = "dropped"
EXIT = "exit"
DETACHED = "detached"


@dataclass(frozen=True)
class ChildSetup:
    """What the node's process gets between fork and exec (POSIX; see ``childsetup``)."""

    procs_file: str | None = None  # the cgroup to join
    rlimit_as: int | None = None
    cores: list[int] | None = None
    nice: int | None = None


@dataclass(frozen=True)
class JobSpec:
    """Windows: the Job Object the shim makes, puts itself in, and starts the node in.
    The numbers are ``platform.windows_job.JobLimits``, computed by the keeper; the shim
    adds kill-on-close and its own commit to the job memory limit (the cap is the node's)."""

    name: str  # named, so that the keeper can open it for usage and tree kill
    limit_flags: int = 0
    process_memory: int = 0
    job_memory: int = 0
    affinity: int = 0
    priority_class: int = 0
    cpu_rate: int | None = None


@dataclass(frozen=True)
class ShimSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    address: str  # multiprocessing.connection address
    authkey_hex: str
    anchor_pid: int  # the launcher: when it ends, the node is stopped
    stop_timeout: float  # graceful stop, then kill, when the anchor ends
    log_path: str  # the shim's own few lines (start, anchor gone, errors)
    child: ChildSetup = field(default_factory=ChildSetup)
    job: JobSpec | None = None  # Windows only
    format: int = FORMAT

    def write(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(self), f)

    @classmethod
    def read(cls, path: Path) -> ShimSpec:
        data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
        child = ChildSetup(**data.pop("child", {}))
        job_data = data.pop("job", None)
        job = JobSpec(**job_data) if isinstance(job_data, dict) else None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(child=child, job=job, **known)


def family(address: str) -> str:
    """The ``multiprocessing.connection`` family of an address."""
    return "AF_PIPE" if address.startswith("\\\\") else "AF_UNIX"


def new_address(tag: str) -> str:
    """A fresh address: a named pipe on Windows, an abstract socket on Linux (no file to
    leave behind, no path length limit; HMAC, not file permissions, keeps others out)."""
    suffix = f"nodekeeper-shim-{tag}-{os.urandom(6).hex()}"
    if os.name == "nt":
        return "\\\\.\\pipe\\" + suffix
    return "\0" + suffix
