"""OpenVINO candidates: NNCF forms (modelport's recipe, the plain transformer preset and the
plain defaults, symmetric activations with the SmoothQuant alpha chosen on the calibration
data, the INT8 scopes, weights-only), the plugin's default precision (bf16 on a
bf16 CPU) for the float parts, and runtime settings (threads; streams and the THROUGHPUT hint
for a throughput search)."""

from __future__ import annotations

from pathlib import Path

from modelport.optimize.candidates import (
    Proposal,
    ProposalContext,
    Recipe,
    Runtime,
    thread_counts,
)
from modelport.specs import Precision

#: the plain NNCF calls a user writes: ``nncf.quantize(model, dataset)`` and the same with
#: ``model_type=TRANSFORMER``; every scope modelport knows
PLAIN = "nncf.quantize"
#: a peer's plain call: NNCF's own placement, and none of modelport's float fallback (the peer
#: has none; on MiniLM the defaults' miss started a search over 48 layers)
PEER = {"int8_scope": "all", "max_fallback": 0}


def propose(ctx: ProposalContext) -> Proposal:
    from modelport.backends.onnx_qdq import activation_matmuls

    attention = bool(activation_matmuls(Path(ctx.onnx_path)))
    precision = ctx.target.precision
    recipes = [Recipe("modelport default")]
    if precision == Precision.INT8:
        # modelport's own recipe on a VNNI CPU is the transformer preset, on an AVX2 one
        # weights-only (backends/cpu_recipes.py): the same build is timed once, both named
        default_is = ("NNCF transformer preset" if ctx.vnni else "weights-only INT8") \
            if attention else None
        if attention:
            recipes.append(Recipe("NNCF transformer preset", {**PEER, "model_type": "transformer"},
                                  peer=PLAIN,
                                  same_as=_alias(default_is, "NNCF transformer preset")))
        recipes.append(Recipe("NNCF defaults", {**PEER, "model_type": "default"}, peer=PLAIN))
        if attention:  # no zero points to compensate: the fastest b32 form on MiniLM (Zen 5),
            # with the SmoothQuant alpha that keeps it closest to FP32 (smooth_alpha.py)
            recipes.append(Recipe("symmetric activations, SmoothQuant alpha auto",
                                  {"preset": "performance", "smooth_quant": "auto"}))
        scopes = ("no-attention-matmul", "fc-only") if attention else ("fc-only",)
        recipes += [Recipe(f"int8_scope {s}", {"int8_scope": s}) for s in scopes]
        recipes.append(Recipe("weights-only INT8", {"int8_scope": "weights-only"},
                              same_as=_alias(default_is, "weights-only INT8")))
    runtimes = [Runtime(threads=t) for t in thread_counts(ctx)]
    if ctx.objective == "throughput":  # async requests on several streams
        runtimes += [Runtime(streams=0), Runtime(streams=2)]
    if precision in (Precision.INT8, Precision.INT8WO, Precision.INT4) and ctx.bf16:
        # the float parts in bf16: what the plugin picks by itself on this CPU
        runtimes.append(Runtime(inference_precision="bf16"))
    # --shape: a static candidate; else a static fast path for the timed shape beside the
    # dynamic model (any other shape still runs)
    return Proposal(recipes, runtimes, shapes=ctx.shapes, specialize=not ctx.shapes)


def _alias(default_is: str | None, name: str) -> str | None:
    return "modelport default" if default_is == name else None
