"""INT8 for ONNX Runtime with ``onnxruntime.quantization``, fed by the shared CalibrationSet."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from modelport.errors import BuildError, CalibrationDataError
from modelport.runtimes.base import BuildOptions

log = logging.getLogger("modelport")

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
INT8_MODES = ("static", "dynamic")


def default_mode(model) -> str:
    """Measured defaults (bench/RESULTS.md): see the module docstring of runtimes/onnxruntime.py."""
    return "dynamic" if model.task == "embedding" else "static"


def quantize_int8(src: Path, dst: Path, calib, model, options: BuildOptions) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    mode = options.int8_mode or default_mode(model)
    if mode not in INT8_MODES:
        raise BuildError(f"unknown INT8 mode '{mode}': use one of {', '.join(INT8_MODES)}")
    with tempfile.TemporaryDirectory(prefix="modelport-ort-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        _preprocess(src, pre)
        if mode == "dynamic":
            ops = list(options.extra.get("op_types") or ["MatMul", "Gemm"])
            quantize_dynamic(
                str(pre), str(dst), op_types_to_quantize=ops, weight_type=QuantType.QInt8,
                per_channel=True, extra_options={"MatMulConstBOnly": True},
            )
            return {"precision": "int8", "mode": "dynamic", "weights": "s8 per-channel",
                    "activations": "u8 dynamic (per batch)", "op_types": ops}
        return _quantize_static(pre, dst, calib, options)


def _quantize_static(pre: Path, dst: Path, calib, options: BuildOptions) -> dict[str, Any]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if calib is None or len(calib) == 0:
        raise CalibrationDataError("static INT8 needs calibration data: pass --calib")
    method = options.calibration_method or "minmax"
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise BuildError(f"unknown calibration method '{method}': use one of {', '.join(methods)}")
    ops = options.extra.get("op_types")
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    exclude = list(options.extra.get("nodes_to_exclude") or [])
    quantize_static(
        str(pre), str(dst), _Reader(calib),
        quant_format=QuantFormat.QDQ,
        # u8 activations + s8 weights: s8s8 QDQ ran slower than FP32 on this x86 CPU
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=methods[method],
        op_types_to_quantize=ops,
        nodes_to_exclude=exclude,
        extra_options=extra,
    )
    log.info("calibrated INT8 on %d samples (%s)", len(calib), method)
    return {"precision": "int8", "mode": "static", "format": "QDQ", "weights": "s8 per-channel",
            "activations": "u8 asymmetric", "calibration_method": method,
            "calibration_samples": len(calib), "op_types": ops or "all",
            "nodes_excluded": exclude}


def _preprocess(src: Path, dst: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # symbolic shape inference fails on dynamo-exported transformers; ONNX shape inference is enough
    quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


class _Reader:
    """CalibrationDataReader over a CalibrationSet, with a progress bar."""

    def __init__(self, calib) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=len(calib), desc="calibrating INT8 (onnxruntime)", unit="sample",
                         leave=False)
        self._it = iter(calib)

    def get_next(self):
        sample = next(self._it, None)
        if sample is None:
            self._bar.close()
        else:
            self._bar.update(1)
        return sample

    def rewind(self) -> None:  # pragma: no cover - not used by the static quantizer
        pass
