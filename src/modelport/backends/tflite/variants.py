"""TFLite full-integer INT8 of a CNN: the CNN recipe's variants, chosen by measurement.

As for ONNX Runtime (backends/onnxruntime/variants.py): the CNN recipe (graph_prep) is not
better for every model. On EfficientNet-Lite0 its bias correction raised the INT8 logits'
cosine (0.980 -> 0.994) while the decisions kept on photos it had not seen fell (88% -> 85%),
because the bias-corrected float graph itself moves decisions. So with ``--cnn-recipe auto``
on a convolutional graph both variants are built (the recipe's graph, and the graph as
exported: the TFLite converter's own full-integer recipe), each with its float fallback, and
the one closest to the EXPORTED float graph on a validation slice of the calibration data
wins (``fallback.closest``). The slice (``fallback.validation_split``) is held apart from the
recipe's statistics and is never the evaluation split. An explicit ``--cnn-recipe`` builds
that one variant. The manifest records each candidate's figures (``graph_prep.variants``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from modelport.backends import fallback
from modelport.backends.base import Artifact

log = logging.getLogger("modelport")

#: the variants ``auto`` weighs on a convolutional graph, in order (the first wins a tie)
AUTO_VARIANTS = ("auto", "off")
CHOSEN_BY = ("closest to the exported float graph on the validation slice (fallback.closest): "
             "decisions where they differ beyond the slice's sampling noise, else mean cosine")

#: build_one(fit, recipe, workdir) -> Artifact: one variant's TFLite build
BuildOne = Callable[[Any, Any, Path], Artifact]


def weighs_variants(onnx_path: Path, calib, recipe) -> bool:
    """Whether ``auto`` should build both variants: the recipe is ``auto``, it changes this
    graph, and there is enough calibration data to hold a validation slice apart."""
    from modelport.graph_prep.options import parse_recipe
    from modelport.graph_prep.recipe import applies

    if calib is None or len(calib) < fallback.MIN_SPLIT:
        return False
    parsed = parse_recipe(recipe)
    return parsed.auto and not parsed.off and applies(Path(onnx_path))[0]


def build_chosen(build_one: BuildOne, model, calib, workdir: Path) -> Artifact:
    """Build every variant in a scratch folder, measure each on the validation slice against
    the exported graph, and move the closest into ``workdir``."""
    fit, validation, split = fallback.validation_split(calib)
    with ExitStack() as stack:
        built = []
        for variant in AUTO_VARIANTS:
            scratch = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="modelport-tflite-variant-")))
            log.info("TFLite INT8: building the CNN recipe variant '%s' ...", variant)
            built.append((variant, build_one(fit, variant, scratch)))
        scores = [measure(artifact, validation, model) for _, artifact in built]
        best = fallback.closest(scores)
        variant, artifact = built[best]
        log.info("CNN recipe variants on the validation slice: %s; chosen: %s", "; ".join(
            f"{v} {fallback._summary(m)}" for (v, _), m in zip(built, scores, strict=True)),
            variant)
        for name in artifact.files:
            shutil.copyfile(artifact.workdir / name, workdir / name)
    info = dict(artifact.info)
    prep = dict(info.get("graph_prep") or {"recipe": "off", "applied": False})
    prep["variants"] = {
        "chosen": variant, "chosen_by": CHOSEN_BY, "validation": split,
        "candidates": [{"cnn_recipe": v, "applied": bool((a.info.get("graph_prep") or {})
                                                          .get("applied")),
                        "validation": fallback._short(m)}
                       for (v, a), m in zip(built, scores, strict=True)]}
    info["graph_prep"] = prep
    return Artifact(workdir, artifact.main, artifact.files, info, inputs=artifact.inputs,
                    outputs=artifact.outputs, session_options=artifact.session_options)


def measure(artifact: Artifact, data, model) -> dict[str, Any]:
    """``fidelity`` of the TFLite file vs the exported ONNX graph (ONNX Runtime) on ``data``."""
    from modelport.backends.tflite.convert import onnx_references
    from modelport.backends.tflite.int16_retry import fidelity_of
    from modelport.shapes import crop_or_pad

    specs = artifact.inputs
    feeds = [crop_or_pad(f, specs) for f in data.batches(specs[0].shape[0])]
    references = onnx_references(model, feeds)
    return fidelity_of(artifact.main_path, specs, artifact.outputs, feeds, references,
                       getattr(model, "task", "generic"))
