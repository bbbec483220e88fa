"""What machine a number came from: CPU model and flags, cores, OS, runtime versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from functools import lru_cache
from typing import Any

#: CPU flags that change which kernels runtimes pick (VNNI/AMX for INT8, BF16, AVX-512).
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16",
                     "avx_vnni", "fma", "neon", "asimd", "asimddp")
PACKAGES = ("modelport", "numpy", "torch", "onnxruntime", "openvino", "nncf", "ai-edge-litert",
            "tensorflow-cpu", "tensorrt")


@lru_cache(maxsize=1)
def fingerprint() -> dict[str, Any]:
    cpu, flags = _cpuinfo()
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    from modelport.backends.cpu_kinds import kind_name

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


def _cpuinfo() -> tuple[str, set[str]]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return "", set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags
