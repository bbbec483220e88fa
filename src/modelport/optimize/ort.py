"""ONNX Runtime candidates: INT8 forms (modelport's: static QDQ for graphs without attention,
dynamic for attention graphs; the other form for a CNN; full 8-bit weights; the plain
``quantize_dynamic`` defaults and its per-channel form), the transformer optimizer's fusions
for attention graphs, and runtime settings (intra-op threads, graph optimization level)."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from modelport.optimize.candidates import (
    Proposal,
    ProposalContext,
    Recipe,
    Runtime,
    thread_counts,
)
from modelport.specs import Precision

log = logging.getLogger("modelport")

#: ``--optimize`` graph levels tried besides ORT's default (all): extended skips the layout
#: transformations (NCHWc) that can cost more than they give on small inputs
GRAPH_LEVELS = ("extended", "basic")


def propose(ctx: ProposalContext) -> Proposal:
    from modelport.backends.onnxruntime.quantize import has_activation_matmul

    attention = has_activation_matmul(Path(ctx.onnx_path))
    precision = ctx.target.precision
    recipes = [Recipe("modelport default")]
    if precision == Precision.FP32 and attention:
        recipes.append(Recipe("transformer optimizer fusions", build=fused_fp32,
                              peer="onnxruntime.transformers.optimizer"))
    if precision == Precision.INT8:
        recipes.append(Recipe("quantize_dynamic defaults", build=plain_dynamic,
                              peer="onnxruntime quantize_dynamic"))
        recipes.append(Recipe("quantize_dynamic per_channel=True", build=plain_dynamic_pc,
                              peer="onnxruntime quantize_dynamic"))
        if ctx.vnni:  # full 8-bit weights only where u8 x s8 sums cannot saturate
            recipes.append(Recipe("dynamic, full 8-bit weights",
                                  {"int8_mode": "dynamic", "full_range": True}))
        if attention:
            recipes.append(Recipe("fusions + dynamic INT8", {"int8_mode": "dynamic"},
                                  build=fused_int8, peer="onnxruntime.transformers.optimizer"))
        # the other INT8 form than modelport's (static QDQ for graphs without attention,
        # dynamic for attention graphs): dynamic for a CNN; no static QDQ for attention graphs:
        # it kept MiniLM at cosine 0.34 (quantize.default_mode) and its calibration outlasted
        # every other candidate together on the project's 2-core VM
        if not attention:
            recipes.append(Recipe("dynamic INT8", {"int8_mode": "dynamic"}))
    runtimes = [Runtime(threads=t) for t in thread_counts(ctx)]
    runtimes += [Runtime(graph_optimization_level=g) for g in GRAPH_LEVELS]
    return Proposal(recipes, runtimes, shapes=ctx.shapes)  # --shape: a static candidate


# -- peers' plain recipes and graph rewrites (builds of their own) -------------------------------
def plain_dynamic(backend, model, target, calib, workdir: Path, options, *,
                  per_channel: bool = False):
    """``quantize_dynamic(src, dst)`` as its documentation shows it (per_channel as asked)."""
    from onnxruntime.quantization import quantize_dynamic

    from modelport.backends.base import Artifact

    dst = workdir / "model.onnx"
    quantize_dynamic(str(model.onnx_artifact.path), str(dst), per_channel=per_channel)
    return Artifact(workdir, "model.onnx", ["model.onnx"],
                    {"precision": "int8", "mode": "quantize_dynamic defaults"
                     + (", per_channel=True" if per_channel else "")})


def plain_dynamic_pc(backend, model, target, calib, workdir: Path, options):
    return plain_dynamic(backend, model, target, calib, workdir, options, per_channel=True)


def fused_fp32(backend, model, target, calib, workdir: Path, options):
    from modelport.backends.base import Artifact

    dst = workdir / "model.onnx"
    fused = fuse(Path(model.onnx_artifact.path), dst)
    return Artifact(workdir, "model.onnx", ["model.onnx"],
                    {"precision": "fp32", "fusions": fused})


def fused_int8(backend, model, target, calib, workdir: Path, options):
    """The fused FP32 graph, then modelport's INT8 build on it."""
    src = workdir.parent / f"{workdir.name}-fused" / "model.onnx"
    src.parent.mkdir(exist_ok=True)
    fused = fuse(Path(model.onnx_artifact.path), src)
    prepared = replace(model, onnx_artifact=replace(model.onnx_artifact, path=src))
    artifact = backend.build(prepared, target, calib, workdir, options)
    artifact.info["fusions"] = fused
    shutil.rmtree(src.parent, ignore_errors=True)
    return artifact


def fuse(src: Path, dst: Path) -> dict[str, Any]:
    """``onnxruntime.transformers.optimizer`` (BERT fusions: attention, layer norm, GELU) on
    ``src``; raises when it fused nothing (the candidate would be the plain graph again)."""
    from onnxruntime.transformers.optimizer import optimize_model

    from modelport.errors import BuildError

    quiet = logging.getLogger("onnxruntime.transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        optimized = optimize_model(str(src), model_type="bert", num_heads=0, hidden_size=0)
        stats = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
    finally:
        quiet.setLevel(level)
    if not stats:
        raise BuildError("the transformer optimizer fused nothing in this graph")
    optimized.save_model_to_file(str(dst))
    return stats
