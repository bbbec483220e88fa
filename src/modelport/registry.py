"""Backend registry: name -> import path, so listing targets never imports a runtime.

Adding a backend is one folder under ``backends/`` plus one entry here (docs/architecture.md).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelport.errors import UnknownTarget

if TYPE_CHECKING:
    from modelport.backends.base import Backend


@dataclass(frozen=True)
class BackendEntry:
    name: str
    import_path: str  # "module:Class"
    targets: tuple[str, ...]  # "device:precision"
    description: str


BACKENDS: dict[str, BackendEntry] = {
    entry.name: entry
    for entry in (
        BackendEntry(
            "torch",
            "modelport.backends.torch.backend:TorchBackend",
            ("cpu:fp32", "cpu:bf16", "cuda:fp32", "cuda:fp16", "cuda:bf16"),
            "PyTorch eager: the FP32 reference every table is measured against "
            "(cpu:bf16: autocast on a bf16 CPU, what plain PyTorch gets; cuda:*: the GPU "
            "baseline row)",
        ),
        BackendEntry(
            "onnxruntime",
            "modelport.backends.onnxruntime.backend:OnnxRuntimeBackend",
            ("cpu:fp32", "cpu:int8", "cpu:int4", "cpu:int8wo", "cpu:bf16"),
            "ONNX Runtime CPU; INT8 = dynamic MatMul/Gemm for attention graphs, static QDQ "
            "calibrated on your data otherwise (measured per graph kind); INT4/INT8WO = "
            "weight-only MatMulNBits; bf16 refused (the CPU EP has no bf16 kernels)",
        ),
        BackendEntry(
            "tflite",
            "modelport.backends.tflite.backend:TFLiteBackend",
            ("cpu:fp32", "cpu:fp16", "cpu:int8"),
            "TFLite / LiteRT interpreter (XNNPACK); static shapes; INT8 = full-integer "
            "calibrated on your data for CNNs, dynamic-range for attention graphs "
            "(--tflite-int8-mode)",
        ),
        BackendEntry(
            "openvino",
            "modelport.backends.openvino.backend:OpenVINOBackend",
            ("cpu:fp32", "cpu:fp16", "cpu:bf16", "cpu:int8", "cpu:int4", "cpu:int8wo"),
            "OpenVINO IR; precision hint set per target (bf16: on a CPU with AVX512_BF16 or "
            "AMX); INT8 = NNCF on your data "
            "(+ accuracy control), for attention graphs on a CPU without VNNI int8 weights "
            "only (the CPU recipe); INT4/INT8WO = nncf.compress_weights",
        ),
        BackendEntry(
            "tensorrt",
            "modelport.backends.tensorrt.backend:TensorRTBackend",
            ("cuda:fp32", "cuda:fp16", "cuda:int8"),
            "TensorRT on NVIDIA GPUs: bundle = ONNX (INT8: explicit Q/DQ) + build recipe; "
            "the engine is built on the device",
        ),
    )
}


def register(entry: BackendEntry) -> None:
    """Register a third-party backend (same shape as the built-in ones)."""
    BACKENDS[entry.name] = entry


def all_target_names() -> list[str]:
    return [f"{e.name}:{t}" for e in BACKENDS.values() for t in e.targets]


def get_backend(name: str) -> type[Backend]:
    """Import and return the backend class for a runtime name."""
    try:
        entry = BACKENDS[name]
    except KeyError:
        raise UnknownTarget(
            f"unknown runtime '{name}': known runtimes are {', '.join(sorted(BACKENDS))}"
        ) from None
    module_name, _, class_name = entry.import_path.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
