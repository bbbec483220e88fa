"""ONNX Runtime on CPU: FP32 (the validated ONNX as is) and INT8 (QDQ, calibrated on your data).

INT8 recipe, chosen by measurement on this project's AVX-512 VNNI CPU (see ort_quantize.py
and bench/RESULTS.md): u8 activations + s8 per-channel weights (s8 activations were slower
than FP32 on x86), dynamic quantization restricted to MatMul/Gemm (dynamic Conv emits
ConvInteger, 4x slower than FP32).
"""

from __future__ import annotations

import importlib.metadata
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.runtimes.base import (
    Artifact,
    Availability,
    Backend,
    BuildOptions,
    Session,
    has_module,
    require,
)
from modelport.specs import Precision, Target, TensorSpec


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    extra = "onnxruntime"

    @classmethod
    def availability(cls, target: Target) -> Availability:
        if not has_module("onnxruntime"):
            return Availability(False, 'onnxruntime not installed: pip install "modelport[onnxruntime]"')
        return Availability(True)

    @classmethod
    def runtime_version(cls) -> str:
        return importlib.metadata.version("onnxruntime")

    def build(self, model, target: Target, calib, workdir: Path, options: BuildOptions) -> Artifact:
        require("onnxruntime", extra=self.extra, what="ONNX Runtime")
        onnx_path: Path = model.onnx_artifact.path
        dst = workdir / "model.onnx"
        if target.precision == Precision.FP32:
            shutil.copyfile(onnx_path, dst)
            files = ["model.onnx"]
            data = onnx_path.with_name(onnx_path.name + ".data")
            if data.exists():
                shutil.copyfile(data, workdir / data.name)
                files.append(data.name)
            return Artifact(workdir, "model.onnx", files, {"precision": "fp32"})
        from modelport.runtimes.ort_quantize import quantize_int8

        info = quantize_int8(onnx_path, dst, calib, model, options)
        return Artifact(workdir, "model.onnx", ["model.onnx"], info)

    def load(self, path: Path, *, target: Target, inputs: list[TensorSpec],
             outputs: list[TensorSpec], threads: int | None = None, **options: Any) -> Session:
        require("onnxruntime", extra=self.extra, what="ONNX Runtime")
        return OnnxRuntimeSession(path, inputs, outputs, threads=threads)


class OnnxRuntimeSession(Session):
    def __init__(self, path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec], *,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        super().__init__(inputs, outputs)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.threads = threads
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._output_names = list(self.outputs)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self._output_names, dict(feeds))
        return dict(zip(self._output_names, values, strict=True))

    def close(self) -> None:
        self._session = None
