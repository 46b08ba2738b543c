"""What the Windows platform writes into a Job Object, checked on any OS.

Wine accepts the job limit structures without storing them, so these pure functions
are where the arguments of those calls are pinned down.
"""

from __future__ import annotations

import ctypes
import sys

import pytest

from nodekeeper.platform.base import ResourceLimits
from nodekeeper.platform.windows_job import (
    BELOW_NORMAL_PRIORITY_CLASS,
    JOB_OBJECT_CPU_RATE_CONTROL_ENABLE,
    JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP,
    JOB_OBJECT_LIMIT_AFFINITY,
    JOB_OBJECT_LIMIT_JOB_MEMORY,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOB_OBJECT_LIMIT_PRIORITY_CLASS,
    JOB_OBJECT_LIMIT_PROCESS_MEMORY,
    CpuRateControl,
    affinity_mask,
    cpu_rate,
    cpu_rate_struct,
    job_limits,
)


def test_no_limits_still_kill_on_close() -> None:
    limits = job_limits(ResourceLimits(), cpu_count=4)
    assert limits.limit_flags == JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    assert (limits.process_memory, limits.job_memory, limits.affinity) == (0, 0, 0)
    assert limits.priority_class == 0
    assert limits.cpu_rate is None


def test_every_limit() -> None:
    wanted = ResourceLimits(
        memory_hard_bytes=1 << 30,
        cpu_rate_percent=150.0,
        cpu_cores=(0, 2),
        below_normal_priority=True,
    )
    limits = job_limits(wanted, cpu_count=4)
    assert limits.limit_flags == (
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        | JOB_OBJECT_LIMIT_PROCESS_MEMORY
        | JOB_OBJECT_LIMIT_JOB_MEMORY
        | JOB_OBJECT_LIMIT_AFFINITY
        | JOB_OBJECT_LIMIT_PRIORITY_CLASS
    )
    assert limits.job_memory == limits.process_memory == 1 << 30
    assert limits.affinity == 0b101
    assert limits.priority_class == BELOW_NORMAL_PRIORITY_CLASS == 0x4000
    assert limits.cpu_rate == 3750  # 1.5 of 4 cores = 37.5 % of the machine


@pytest.mark.parametrize(
    ("percent", "cpus", "rate"),
    [(100.0, 1, 10_000), (100.0, 2, 5_000), (50.0, 8, 625), (400.0, 2, 10_000), (0.0001, 64, 1)],
)
def test_cpu_rate_is_hundredths_of_a_percent_of_the_machine(
    percent: float, cpus: int, rate: int
) -> None:
    assert cpu_rate(percent, cpus) == rate


def test_affinity_mask_rejects_cores_outside_group_zero() -> None:
    assert affinity_mask((63,)) == 1 << 63
    with pytest.raises(ValueError, match="processor group"):
        affinity_mask((64,))


def test_cpu_rate_structure_layout() -> None:
    """JOBOBJECT_CPU_RATE_CONTROL_INFORMATION is 8 bytes: flags, then the CpuRate union."""
    assert ctypes.sizeof(CpuRateControl) == 8
    assert CpuRateControl.CpuRate.offset == 4
    info = cpu_rate_struct(2500)
    assert bytes(info) == (5).to_bytes(4, "little") + (2500).to_bytes(4, "little")
    assert info.ControlFlags == (
        JOB_OBJECT_CPU_RATE_CONTROL_ENABLE | JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP
    )


@pytest.mark.skipif(sys.platform == "win32", reason="checks the Linux import path")
def test_platform_package_imports_without_pywin32() -> None:
    import nodekeeper.platform as platform

    assert platform.current_platform().name == "posix"
    with pytest.raises(ImportError):
        import nodekeeper.platform.windows  # noqa: F401  (pywin32 only exists on Windows)
