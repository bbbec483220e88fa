"""The kinds of CPU that change what modelport builds: one definition for every choice.

Which artifact is fastest and correct depends on a few instructions, not on the CPU's name:
an int8 dot product in one instruction (VNNI / AMX: INT8 pays), bf16 arithmetic (AVX512_BF16
/ AMX-BF16: bf16 targets exist), and the AMX tiles (OpenVINO and oneDNN run bf16 and INT8
matrix products on them). The INT8 recipe table (``cpu_recipes``), the bf16 targets, the
sweep's build key (``sweep/plan.py``), the bench report's machine line and any search cache
classify a CPU with ``kind_of(features)`` (or ``kind_name``), so they all agree.

Features are the fingerprint's tracked flags (``bench.fingerprint.FLAGS_OF_INTEREST``), from
this machine or from ``--cpu-features`` (``cpu_recipes.parse_features``). Nothing here
imports a runtime.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class CpuKind:
    """One kind of CPU. ``features``: what a build for this kind assumes (the flags that make
    it this kind, with the ones every such CPU has); ``int8_row``: the INT8 recipe row it takes
    in ``cpu_recipes.RECIPES`` ("vnni": int8 dot products in one instruction, else "no-vnni");
    ``bf16``: bf16 arithmetic, so bf16 targets are built and run; ``amx``: AMX tiles."""

    name: str
    label: str
    features: tuple[str, ...]
    int8_row: str
    bf16: bool = False
    amx: bool = False


#: every kind, most capable first; ``kind_of`` returns the first whose test a CPU passes
KINDS: dict[str, CpuKind] = {k.name: k for k in (
    CpuKind("amx-bf16", "AMX + bf16 (Xeon 4th gen and later)",
            ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16"),
            "vnni", bf16=True, amx=True),
    CpuKind("avx512-vnni-bf16", "AVX-512 VNNI + bf16 (Zen 4/5, Cooper Lake)",
            ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"), "vnni", bf16=True),
    CpuKind("avx512-vnni", "AVX-512 VNNI, no bf16 (Cascade/Ice Lake)",
            ("avx2", "fma", "avx512f", "avx512_vnni"), "vnni"),
    CpuKind("avx-vnni", "AVX2 + AVX-VNNI, no AVX-512 (Alder Lake and later clients)",
            ("avx2", "fma", "avx_vnni"), "vnni"),
    CpuKind("avx2", "AVX2 only, no VNNI (Zen 1-3, Haswell-Skylake)", ("avx2", "fma"),
            "no-vnni"),
    CpuKind("arm-dotprod", "Arm with dot product (asimddp)", ("asimd", "asimddp"), "vnni"),
    CpuKind("arm", "Arm NEON, no dot product", ("asimd",), "no-vnni"),
    CpuKind("baseline", "none of the tracked features", (), "no-vnni"),
)}

#: either gives bf16 arithmetic to the runtimes' CPU kernels
BF16_FEATURES = ("avx512_bf16", "amx_bf16")
#: the CPU flags that change which kernels runtimes pick (the fingerprint's ``cpu_flags``)
TRACKED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16",
                 "avx_vnni", "fma", "neon", "asimd", "asimddp")


def kind_of(features: Iterable[str]) -> CpuKind:
    """The kind of a CPU with these features (fingerprint flags or ``--cpu-features``)."""
    have = set(features)
    if have & {"amx_int8", "amx_bf16"}:
        name = "amx-bf16"
    elif "avx512_vnni" in have:
        name = "avx512-vnni-bf16" if "avx512_bf16" in have else "avx512-vnni"
    elif "avx_vnni" in have:
        name = "avx-vnni"
    elif "avx2" in have:
        name = "avx2"
    elif "asimddp" in have:
        name = "arm-dotprod"
    elif have & {"asimd", "neon"}:
        name = "arm"
    else:
        name = "baseline"
    return KINDS[name]


def kind_name(features: Iterable[str]) -> str:
    """``kind_of(features).name``: the stable key (recipe table, sweep builds, search cache)."""
    return kind_of(features).name


def kind_features(name: str) -> tuple[str, ...]:
    """The features a build for kind ``name`` assumes (what ``--cpu-features`` would say)."""
    return KINDS[name].features


def has_bf16(features: Iterable[str]) -> bool:
    """bf16 arithmetic: AVX512_BF16 or AMX-BF16."""
    return bool(set(features) & set(BF16_FEATURES))


def bf16_refusal(features: Iterable[str]) -> str | None:
    """Why a bf16 CPU target is refused on a CPU with these features (None: it is not)."""
    features = tuple(features)
    if has_bf16(features):
        return None
    return (f"a CPU of kind {kind_name(features)} has no bf16 arithmetic (avx512_bf16 or "
            "amx_bf16): the runtimes would emulate bf16 or run fp32; to build for a bf16 CPU "
            "give its features with --cpu-features")


def refuse_bf16(target: Any, cpu_features: Iterable[str] | None) -> str | None:
    """``Backend.build_refusal`` of a bf16 CPU target: the CPU built for (``cpu_features``, None:
    this machine) must have bf16 arithmetic; None for any other target."""
    if str(target.precision) != "bf16" or target.device != "cpu":
        return None
    return bf16_refusal(host_features() if cpu_features is None else cpu_features)


def runnable_here(target: Any, installed: Any) -> Any:
    """``Backend.runnable`` of a backend with bf16 CPU targets: what ``installed`` (an
    Availability) says, unless the target is bf16 and this CPU has no bf16 arithmetic."""
    if installed.ok:
        refusal = refuse_bf16(target, None)
        if refusal:
            return type(installed).unsupported(refusal)
    return installed


def bf16_assumed(cpu_features: Iterable[str] | None) -> dict[str, Any]:
    """Manifest facts of a bf16 build: the one bf16 feature it needs (``cpu_recipes.check_host``
    warns when the bundle is loaded on a CPU without it) and the kind built for."""
    features = tuple(host_features() if cpu_features is None else cpu_features)
    need = [f for f in BF16_FEATURES if f in features][:1]
    return {"cpu_features_assumed": need,
            "cpu_features_source": "build machine" if cpu_features is None
            else "--cpu-features", "cpu_kind": kind_name(features)}


def host_features() -> tuple[str, ...]:
    """This machine's tracked CPU features (TRACKED_FLAGS, in that order)."""
    flags = read_cpuinfo()[1]
    return tuple(f for f in TRACKED_FLAGS if f in flags)


@lru_cache(maxsize=1)
def read_cpuinfo() -> tuple[str, frozenset[str]]:
    """(CPU model name, every flag) from /proc/cpuinfo; ("", {}) where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return "", frozenset()
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return model, flags


def host_kind() -> CpuKind:
    return kind_of(host_features())
