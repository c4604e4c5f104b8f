"""What a benchmark ran on, for its report: the CPU's model name and the cores this process may use."""

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Fewer than os.cpu_count() under taskset or a cgroup cpuset, where the figures are per usable core."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity outside Linux
        return os.cpu_count() or 1


def describe() -> dict:
    return {"cpu": cpu_name(), "cores": usable_cores(), "python": platform.python_version()}
