"""ONNX Runtime static INT8 of a CNN: the CNN recipe's variants, chosen by measurement.

The CNN recipe (graph_prep: BatchNorm folding, equalization, bias correction) is not better
for every model: on EfficientNet-Lite0 bias correction took the INT8 logits' cosine from 0.981
to 0.995 while the decisions it kept on photos it had not seen stayed where plain per-channel
INT8 left them (docs/cnn-int8.md). So with ``--cnn-recipe auto`` on a convolutional graph
each variant (the recipe, and the graph as exported: ORT's plain per-channel
``quantize_static``) is built, and the one closest to the float graph on a validation slice
of the calibration data wins (``fallback.closest``: decisions where they differ beyond the
slice's sampling noise, else mean cosine). The slice (``fallback.validation_split``: the last third, at most 64
samples) is held apart from the recipe's statistics and is never the evaluation split; the
float fallback then runs on the chosen build, judged on the same slice. An explicit
``--cnn-recipe`` (a step list, or ``off``) builds that one variant only. Each candidate's
figures and the choice go into the manifest (``graph_prep.variants``).
"""

from __future__ import annotations

import logging
import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from modelport.backends import fallback
from modelport.backends.onnxruntime.options import OnnxRuntimeOptions
from modelport.backends.onnxruntime.quantize import Probe, StaticBuild, default_mode, quantize_int8

log = logging.getLogger("modelport")

#: the variants ``auto`` weighs on a convolutional graph, in order (the first wins a tie)
AUTO_VARIANTS = ("auto", "off")
CHOSEN_BY = ("closest to the float graph on the validation slice (fallback.closest): decisions "
             "where they differ beyond the slice's sampling noise, else mean cosine")


def build_int8(onnx_path: Path, dst: Path, calib, model, options: OnnxRuntimeOptions, recipe,
               *, budget=None, weight_qmax: int = 127) -> dict[str, Any]:
    """INT8 of the exported graph at ``onnx_path`` into ``dst``; returns the manifest facts
    (the chosen variant's ``graph_prep`` record with ``variants``)."""
    from modelport.graph_prep.recipe import bias_shifts, int8_graph

    static = (options.int8_mode or default_mode(onnx_path)) != "dynamic"
    if not static or calib is None or len(calib) == 0:
        # dynamic INT8 quantizes no conv activations: the graph as exported
        with int8_graph(onnx_path, calib, recipe, when=False) as (src, prep):
            return {**quantize_int8(src, dst, calib, model, options, budget=budget), **prep}
    runs = recipe_runs(onnx_path, recipe)
    fit, validation, split = fallback.validation_split(calib, hold_apart=runs)
    probe = Probe(validation, Path(onnx_path), split["slice"])
    variants = candidates(recipe, runs, split)
    with ExitStack() as stack:
        built = []
        for i, variant in enumerate(variants):
            out = dst if len(variants) == 1 else _scratch(stack, dst, i)
            src, prep = stack.enter_context(int8_graph(onnx_path, fit, variant,
                                                       weight_qmax=weight_qmax))
            tmp = Path(stack.enter_context(_tempdir()))
            build = StaticBuild(src, out, calib, options, tmp, shifts=bias_shifts(src))
            built.append((variant, build, prep))
        if len(built) == 1:
            variant, build, prep = built[0]
            return {**build.fall_back(model, budget, probe), **prep}
        scores = [measure(build.dst, probe, model) for _, build, _ in built]
        best = fallback.closest(scores)
        variant, build, prep = built[best]
        log.info("CNN recipe variants on the validation slice: %s; chosen: %s", "; ".join(
            f"{v} {fallback._summary(m)}" for (v, _, _), m in zip(built, scores, strict=True)),
            variant)
        info = build.fall_back(model, budget, probe)
        shutil.copyfile(build.dst, dst)
    prep = dict(prep.get("graph_prep") or {})
    prep["variants"] = {
        "chosen": variant, "chosen_by": CHOSEN_BY, "validation": split,
        "candidates": [{"cnn_recipe": v, "applied": bool(p.get("graph_prep", {}).get("applied")),
                        "validation": fallback._short(m)}
                       for (v, _, p), m in zip(built, scores, strict=True)]}
    return {**info, "graph_prep": prep}


def recipe_runs(onnx_path: Path, recipe) -> bool:
    """Whether the CNN recipe would change this graph (on, and a graph it applies to)."""
    from modelport.graph_prep.options import parse_recipe
    from modelport.graph_prep.recipe import applies

    return not parse_recipe(recipe).off and applies(Path(onnx_path))[0]


def candidates(recipe, runs: bool, split: dict[str, Any]) -> list[Any]:
    """The recipe variants to build: ``AUTO_VARIANTS`` when the recipe is ``auto``, runs on
    this graph and a validation slice was held apart; else the recipe as given."""
    from modelport.graph_prep.options import parse_recipe

    if runs and parse_recipe(recipe).auto and split["held_apart"]:
        return list(AUTO_VARIANTS)
    return [recipe]


def measure(path: Path, probe: Probe, model) -> dict[str, Any]:
    """``fidelity`` of the INT8 graph at ``path`` vs the float graph on the probe."""
    from modelport.backends.onnxruntime.float_fallback import run
    from modelport.metrics import fidelity

    return fidelity(run(path, probe.data), run(probe.graph, probe.data),
                    task=getattr(model, "task", "generic"), labels=probe.data.labels)


def _scratch(stack: ExitStack, dst: Path, index: int) -> Path:
    return Path(stack.enter_context(_tempdir())) / f"variant{index}-{dst.name}"


def _tempdir():
    import tempfile

    return tempfile.TemporaryDirectory(prefix="modelport-ort-variant-")
