"""The CPU INT8 recipe per kind of CPU, as measured: which INT8 form is faster than FP32 there.

Why a table: INT8 only pays where the CPU multiplies int8 in one instruction. With VNNI
(AVX-512 VNNI, AVX-VNNI, AMX) a u8 x s8 dot product is one instruction; without it x86 needs
three (vpmaddubsw, vpmaddwd, vpaddd) plus the quantize/dequantize around each layer, and on
MiniLM's 384-wide matrices OpenVINO's INT8 (NNCF transformer preset) ran *slower* than OpenVINO
FP32 on an AVX2-only EPYC, while it was the fastest artifact on a VNNI Zen 4
(../shared/FINDINGS.md; experiments/int8_recipes.py measures it again). So the recipe is chosen
for the CPU the bundle will run on: by default the build machine's features, or the ones given
with ``--cpu-features``; the manifest records both, and loading a bundle on a CPU that lacks an
assumed feature warns (``check_host``).

A recipe sets backend options the user left at their defaults; an option the user set wins.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from modelport.errors import UsageError

#: the CPU features a recipe may depend on (the fingerprint's tracked flags)
KNOWN_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16",
                  "avx_vnni", "fma", "neon", "asimd", "asimddp")
#: any of these gives int8 dot products in one instruction
VNNI_FEATURES = ("avx512_vnni", "avx_vnni", "amx_int8")
#: the rows of the table: every kind of CPU (backends/cpu_kinds.py) takes one (CpuKind.int8_row)
CPU_KINDS = ("vnni", "no-vnni")


class CpuFeatureWarning(UserWarning):
    """A bundle's INT8 recipe was chosen for CPU features this machine lacks."""


@dataclass(frozen=True)
class CpuRecipe:
    """One row of the table: the INT8 recipe of ``backend`` on a ``kind`` of CPU."""

    backend: str
    kind: str
    #: backend option defaults (field -> value); a value the user set wins
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: one line: the form, and the measurement that chose it
    why: str = ""
    #: "attention": the settings were measured on transformers and apply to attention graphs
    #: only (a CNN keeps the backend's default form); "no-attention": convolutional and other
    #: graphs without an activation x activation MatMul; "any": every graph
    applies_to: str = "any"
    #: what goes wrong when the bundle runs on a CPU without the assumed features (the load
    #: warning says it); None: it runs, possibly slower
    risk: str | None = None


RECIPES: dict[tuple[str, str], CpuRecipe] = {
    ("onnxruntime", "vnni"): CpuRecipe(
        "onnxruntime", "vnni", {"full_range": True},
        "static QDQ u8/s8 with full 8-bit per-channel weights for graphs without attention "
        "(VNNI adds u8 x s8 products in int32, so nothing saturates): EfficientNet-Lite0 keeps "
        "88.5% of torch's decisions with 8-bit weights vs 70% with 7-bit (docs/cnn-int8.md); "
        "attention graphs keep dynamic MatMul INT8 with 7-bit weights (MiniLM b1 2.87x torch, "
        "Zen 4 VNNI, FINDINGS.md)",
        applies_to="no-attention",
        risk="its full-range 8-bit weights can saturate u8 x s8 sums without VNNI, so results "
             "can be wrong here (run `modelport verify`)"),
    ("onnxruntime", "no-vnni"): CpuRecipe(
        "onnxruntime", "no-vnni", {},
        "the same form (7-bit weights keep u8 x s8 from saturating without VNNI): MiniLM b1 "
        "2.23x torch vs ORT FP32 1.47x (AVX2 EPYC, FINDINGS.md)"),
    ("openvino", "vnni"): CpuRecipe(
        "openvino", "vnni", {},
        "NNCF transformer preset for attention graphs: MiniLM b1 3.35x torch vs OpenVINO FP32 "
        "1.83x (Zen 4 VNNI, FINDINGS.md)"),
    ("openvino", "no-vnni"): CpuRecipe(
        "openvino", "no-vnni", {"int8_scope": "weights-only"},
        "int8 weights, float activations (--openvino-int8-scope weights-only): on MiniLM the "
        "one INT8 form faster than OpenVINO FP32 at b1 in three quiet runs (1.05x, 1.15x, "
        "1.11x; b32 0.88x, 1.11x, 0.98x), cosine 0.9997, 4x smaller; no weight+activation "
        "form beat FP32 reliably (b1 0.83x-1.05x, b32 0.74x-1.01x over the same runs: NNCF's "
        "full transformer placement, no-attention-matmul, fc-only) (AVX2 EPYC, "
        "experiments/int8_recipes.py, 2026-12-01)",
        applies_to="attention"),
}


def host_features() -> tuple[str, ...]:
    """The tracked CPU features of this machine (``modelport.bench.fingerprint``)."""
    from modelport.backends.cpu_kinds import host_features as features

    return features()


def parse_features(text: str | Iterable[str]) -> tuple[str, ...]:
    """``avx2,fma`` -> ('avx2', 'fma'); ``none`` -> (); unknown names suggest the closest."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [str(n).strip().lower() for n in items if str(n).strip()]
    if names == ["none"]:
        return ()
    for name in names:
        if name not in KNOWN_FEATURES:
            close = difflib.get_close_matches(name, KNOWN_FEATURES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UsageError(f"unknown CPU feature '{name}'{hint}: use names from "
                             f"{', '.join(KNOWN_FEATURES)}, or 'none'")
    return tuple(dict.fromkeys(names))


def cpu_kind(features: Iterable[str]) -> str:
    """The kind of CPU (backends/cpu_kinds.py), e.g. ``avx512-vnni-bf16``."""
    from modelport.backends.cpu_kinds import kind_name

    return kind_name(features)


def recipe_row(features: Iterable[str]) -> str:
    """The table row a CPU takes: ``vnni`` or ``no-vnni`` (its kind's ``int8_row``)."""
    from modelport.backends.cpu_kinds import kind_of

    return kind_of(features).int8_row


def recipe_for(backend: str, features: Iterable[str]) -> CpuRecipe | None:
    return RECIPES.get((backend, recipe_row(features)))


def apply_recipe(backend: str, options: Any, assumed: Sequence[str] | None, *,
                 attention: bool | None = None) -> tuple[Any, dict[str, Any]]:
    """(the backend's options with the recipe's defaults filled in, manifest facts).

    ``options``: the backend's options dataclass; ``assumed``: the features to build for
    (None: this machine's)."""
    features = tuple(host_features() if assumed is None else assumed)
    recipe = recipe_for(backend, features)
    info: dict[str, Any] = {"cpu_features_assumed": list(features),
                            "cpu_features_source": "build machine" if assumed is None
                            else "--cpu-features",
                            "cpu_kind": cpu_kind(features),
                            "cpu_recipe_row": recipe_row(features)}
    if recipe is None:
        return options, info
    if recipe.applies_to == "attention" and attention is False:
        info["cpu_recipe"] = {"settings": dict(recipe.settings), "applied": {},
                              "why": "measured on attention graphs; this graph has none, so the "
                                     "backend's default form is kept"}
        return options, info
    if recipe.applies_to == "no-attention" and attention:
        info["cpu_recipe"] = {"settings": dict(recipe.settings), "applied": {},
                              "why": "for graphs without attention; this graph has attention, "
                                     "so the backend's default form is kept"}
        return options, info
    defaults = {f: v for f, v in recipe.settings.items()
                if getattr(options, f) == type(options).__dataclass_fields__[f].default}
    info["cpu_recipe"] = {"settings": dict(recipe.settings), "applied": dict(defaults),
                          "why": recipe.why}
    if recipe.risk and defaults:
        info["cpu_recipe"]["risk"] = recipe.risk
    return (replace(options, **defaults) if defaults else options), info


def missing_here(build: Mapping[str, Any], here: Iterable[str] | None = None) -> list[str]:
    """The features a bundle's build assumed that this machine lacks."""
    assumed = build.get("cpu_features_assumed") or []
    have = set(host_features() if here is None else here)
    return [f for f in assumed if f not in have]


def check_host(manifest: Mapping[str, Any], here: Iterable[str] | None = None) -> list[str]:
    """Warn (CpuFeatureWarning) when this CPU lacks a feature the bundle's recipe assumed;
    returns the missing features."""
    build = manifest.get("build") or {}
    missing = missing_here(build, here)
    if missing:
        risk = ((build.get("cpu_recipe") or {}).get("risk")
                or "it runs, but may be slower than FP32 here")
        warnings.warn(
            f"{manifest.get('target', 'this bundle')} was built for a CPU with "
            f"{', '.join(missing)} ({build.get('cpu_kind', '?')} recipe); this CPU lacks "
            f"{'it' if len(missing) == 1 else 'them'}: {risk}; rebuild here (or with "
            "--cpu-features) for this CPU's recipe",
            CpuFeatureWarning, stacklevel=3)
    return missing
