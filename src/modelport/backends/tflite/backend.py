"""TFLite / LiteRT on CPU: FP32, FP16 and full-integer INT8 ``.tflite`` files.

Building needs the converter toolchain (``modelport[tflite]``: onnx2tf + TensorFlow, see
tflite_convert.py); running a bundle needs only the LiteRT interpreter (``ai-edge-litert``,
``modelport[litert]``), never torch or TensorFlow. XNNPACK is on by default (the interpreter's
default delegate); ``xnnpack=False`` runs TFLite's built-in kernels instead.

TFLite files are static-shape: each one runs exactly the batch size and sequence length it was
exported at (``--shape``). With ``--io int8`` the file's inputs/outputs are int8; the session
quantizes float feeds and dequantizes outputs with the scales stored in the file, so callers
(``modelport run``, ``bench``, ``verify``) feed and get the same float tensors as for FP32.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from modelport.backends.base import (
    Artifact,
    Availability,
    Backend,
    BuildOptions,
    Session,
    has_module,
    require,
)
from modelport.backends.tflite.options import TFLiteOptions
from modelport.backends.tflite.session import TFLiteSession, check_io_quantization
from modelport.backends.tflite.signature import RUNTIME_MODULE, TOOLCHAIN_MODULES
from modelport.specs import Precision, Target, TensorSpec


class TFLiteBackend(Backend):
    name = "tflite"
    extra = "tflite"
    Options = TFLiteOptions
    #: what to try when INT8 misses the budget (see README "TFLite / LiteRT targets")
    budget_hint = ("keep op types in float with --tflite-float-ops, e.g. "
                   "MEAN,SQUARED_DIFFERENCE,RSQRT,SOFTMAX,GELU; for transformers on x86 "
                   "onnxruntime:cpu:int8 or openvino:cpu:int8 keep fidelity")

    @classmethod
    def availability(cls, target: Target) -> Availability:
        """Can we build here? Needs the interpreter and a converter: the onnx2tf toolchain, or
        litert-torch (the fallback, installed on its own)."""
        missing = [m for m in (RUNTIME_MODULE, *TOOLCHAIN_MODULES) if not has_module(m)]
        if missing and has_module(RUNTIME_MODULE) and has_module("litert_torch"):
            return Availability(True, "litert-torch only (onnx2tf toolchain not installed)")
        if missing:
            return Availability.missing(
                f"{', '.join(missing)} not installed: pip install \"modelport[tflite]\""
            )
        return Availability.yes()

    @classmethod
    def runnable(cls, target: Target) -> Availability:
        """Running a .tflite needs only the LiteRT interpreter."""
        if not has_module(RUNTIME_MODULE):
            return Availability.missing(
                'ai-edge-litert not installed: pip install "modelport[litert]"'
            )
        return Availability.yes()

    @classmethod
    def runtime_version(cls) -> str:
        return importlib.metadata.version("ai-edge-litert")

    def build(self, model, target: Target, calib, workdir: Path, options: BuildOptions) -> Artifact:
        require(RUNTIME_MODULE, extra=self.extra, what="TFLite")
        from modelport.backends.tflite.variants import build_chosen, weighs_variants

        if target.precision == Precision.INT8 and weighs_variants(
                model.onnx_artifact.path, calib, options.cnn_recipe):
            artifact = build_chosen(
                lambda fit, recipe, where: self._build_one(model, target, fit, calib, where,
                                                           options, recipe),
                model, calib, workdir)
        else:
            artifact = self._build_one(model, target, calib, calib, workdir, options,
                                       options.cnn_recipe)
        # an INT8 no form of which meets the budget faster than FP32: the refusal says why
        note = artifact.info.get("int8_refusal_note")
        self.budget_hint = f"{note}; {type(self).budget_hint}" if note else type(self).budget_hint
        return artifact

    def _build_one(self, model, target: Target, fit, calib, workdir: Path, options: BuildOptions,
                   recipe) -> Artifact:
        """One build with the CNN recipe ``recipe`` (its statistics from ``fit``; the
        converter calibrates on ``calib``)."""
        from modelport.backends.tflite.convert import convert
        from modelport.graph_prep.recipe import int8_graph, with_onnx

        # the CNN recipe before full-integer conversion; the prepared graph is also the one the
        # conversion is checked against, so a replaced ReLU6 is not a conversion error
        with int8_graph(model.onnx_artifact.path, fit, recipe,
                        when=target.precision == Precision.INT8) as (src, prep):
            artifact = convert(with_onnx(model, src), target, calib, workdir, options.of(self),
                               min_cosine=options.budget_or_default().min_cosine,
                               budget=options.budget_or_default())
        if prep and artifact.info.get("conversion_path") != "onnx2tf":  # litert-torch fallback
            prep = {"graph_prep": {**prep["graph_prep"], "applied": False, "reason":
                                   "converted from the torch module, not the prepared ONNX"}}
        artifact.info.update(prep)
        return artifact

    def load(self, path: Path, *, target: Target, inputs: list[TensorSpec],
             outputs: list[TensorSpec], threads: int | None = None, **options: Any) -> Session:
        require(RUNTIME_MODULE, extra="litert", what="Running a .tflite")
        bundle = options.get("bundle")
        session = TFLiteSession(path, inputs, outputs, threads=threads,
                                xnnpack=options.get("xnnpack", True))
        if bundle is not None:
            check_io_quantization(session, bundle.manifest, bundle.path)
        return session
