"""What machine a number came from: CPU model and flags, cores, OS, runtime versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from functools import lru_cache
from typing import Any

from modelport.backends.cpu_kinds import TRACKED_FLAGS, kind_name, read_cpuinfo

#: CPU flags that change which kernels runtimes pick (VNNI/AMX for INT8, BF16, AVX-512).
FLAGS_OF_INTEREST = TRACKED_FLAGS
PACKAGES = ("modelport", "numpy", "torch", "onnxruntime", "openvino", "nncf", "ai-edge-litert",
            "tensorflow-cpu", "tensorrt")


@lru_cache(maxsize=1)
def fingerprint() -> dict[str, Any]:
    cpu, flags = read_cpuinfo()
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    tracked = [f for f in FLAGS_OF_INTEREST if f in flags]
    return {
        "cpu": cpu or platform.processor() or platform.machine(),
        "cpu_flags": tracked,
        "cpu_kind": kind_name(tracked),  # backends/cpu_kinds.py
        "logical_cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
    }
