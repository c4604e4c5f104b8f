"""What a benchmark ran on, for its report: the CPU's model name, generation and vector instructions, and the
cores this process may use. Two CPUs of the same name can differ severalfold (AVX2 against AVX-512 VNNI)."""

import os
import platform
from pathlib import Path

SIMD = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")  # what ONNX Runtime's and torch's kernels use


def cpuinfo_field(name: str) -> str | None:
    """The first `name : value` of /proc/cpuinfo, or None off Linux."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    return None


def cpu_name() -> str:
    name = cpuinfo_field("model name") or platform.processor() or platform.machine()
    family, model = cpuinfo_field("cpu family"), cpuinfo_field("model")
    return f"{name} (family {family}, model {model})" if family and model else name


def simd() -> list[str]:
    flags = set((cpuinfo_field("flags") or "").split())
    return [feature for feature in SIMD if feature in flags]


def usable_cores() -> int:
    """Fewer than os.cpu_count() under taskset or a cgroup cpuset, where the figures are per usable core."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity outside Linux
        return os.cpu_count() or 1


def describe() -> dict:
    return {"cpu": cpu_name(), "simd": simd(), "cores": usable_cores(), "python": platform.python_version()}


def same_machine(a: dict | None, b: dict | None) -> bool:
    """Whether two benchmark runs' `machine` records name the same kind of machine (CPU, vector instructions, cores),
    the condition for comparing their absolute timings. A record missing either side never matches."""
    keys = ("cpu", "simd", "cores")
    return bool(a and b) and all(key in a and a.get(key) == b.get(key) for key in keys)


def describe_difference(a: dict | None, b: dict | None) -> str:
    def name(m):
        return f"{m.get('cpu', '?')} [{', '.join(m.get('simd', []))}], {m.get('cores', '?')} cores" if m else "unknown"

    return f"{name(a)} against {name(b)}"
