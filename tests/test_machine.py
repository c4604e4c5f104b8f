"""Benchmark reports name the CPU and count the cores the process may use, not the machine's."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_cores_follow_the_cpu_affinity():
    code = (
        "import json, os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from acceptability.core.machine import describe; print(json.dumps(describe()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    pinned = json.loads(result.stdout)
    assert pinned["cores"] == 1
    assert pinned["cpu"]
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    assert pinned["simd"] == [
        feature for feature in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if feature in flags
    ]
