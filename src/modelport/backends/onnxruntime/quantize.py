"""INT8 for ONNX Runtime with ``onnxruntime.quantization``, fed by the shared CalibrationSet."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from modelport.backends import fallback, onnx_qdq
from modelport.backends.onnx_qdq import CalibrationReader, activation_matmuls
from modelport.backends.onnxruntime.options import OnnxRuntimeOptions
from modelport.errors import BuildError, CalibrationDataError

log = logging.getLogger("modelport")

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
INT8_MODES = ("static", "dynamic")


def default_mode(onnx_path: Path) -> str:
    """Static QDQ for convolutional graphs, dynamic MatMul INT8 for attention graphs.

    Measured on all-MiniLM-L6-v2 (eval split, cosine vs torch FP32; bench/RESULTS.md):
    static QDQ u8/s8 MinMax on every op 0.344, MatMul/Gemm only 0.930 (percentile 0.939,
    entropy 0.930), dynamic MatMul 0.993 and the fastest. On digits-cnn static QDQ keeps
    accuracy exactly. An attention graph is recognised by a MatMul of two activations
    (Q x K^T, probabilities x V), whose ranges static calibration cannot capture well.
    """
    return "dynamic" if has_activation_matmul(onnx_path) else "static"


def has_activation_matmul(onnx_path: Path) -> bool:
    return bool(activation_matmuls(onnx_path))


def reduce_range(options: OnnxRuntimeOptions) -> bool:
    """7-bit weights (ORT's ``reduce_range``) unless asked otherwise.

    On x86 CPUs without VNNI, ORT's u8 x s8 kernels add pairs of products in int16 and saturate
    with full-range s8 weights. Measured on an AVX2-only EPYC (tests' 12-16-8 MLP, 100
    calibration rows): full range cosine 0.953 vs its own un-fused Q/DQ math 0.9998; 7-bit
    weights 0.9998 on both. The artifact may run on either kind of CPU, so it is built safe.
    """
    return not options.full_range


def quantize_int8(src: Path, dst: Path, calib, model, options: OnnxRuntimeOptions, *,
                  budget=None) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    mode = options.int8_mode or default_mode(src)
    if mode not in INT8_MODES:
        raise BuildError(f"unknown INT8 mode '{mode}': use one of {', '.join(INT8_MODES)}")
    with tempfile.TemporaryDirectory(prefix="modelport-ort-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        onnx_qdq.preprocess(src, pre)  # by module: the fault tests patch it there
        # over 2 GB the quantized model keeps its weights in dst.name + ".data"
        large = onnx_qdq.is_large(pre)
        if mode == "dynamic":
            ops = list(options.op_types or ["MatMul", "Gemm"])
            quantize_dynamic(
                str(pre), str(dst), op_types_to_quantize=ops, weight_type=QuantType.QInt8,
                per_channel=True, reduce_range=reduce_range(options),
                extra_options={"MatMulConstBOnly": True}, use_external_data_format=large,
            )
            return {"precision": "int8", "mode": "dynamic", "weights": _weights(options),
                    "activations": "u8 dynamic (per batch)", "op_types": ops}
        return _quantize_static(pre, dst, calib, options, large=large, model=model,
                                budget=budget)


def _quantize_static(pre: Path, dst: Path, calib, options: OnnxRuntimeOptions, *,
                     large: bool = False, model=None, budget=None) -> dict[str, Any]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if calib is None or len(calib) == 0:
        raise CalibrationDataError("static INT8 needs calibration data: pass --calib")
    method = options.calib_method or "minmax"
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise BuildError(f"unknown calibration method '{method}': use one of {', '.join(methods)}")
    ops = options.op_types
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    exclude = list(options.nodes_to_exclude or [])
    cache = pre.with_name("ranges.json")  # calibrated once, reused by every fallback trial

    def write(nodes_to_exclude: list[str], nodes_to_quantize: list[str] | None = None) -> None:
        quantize_static(
            str(pre), str(dst), None if cache.exists() else CalibrationReader(calib),
            quant_format=QuantFormat.QDQ,
            # u8 activations + s8 weights: s8s8 QDQ ran slower than FP32 on this x86 CPU
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range(options),
            calibrate_method=methods[method],
            op_types_to_quantize=ops,
            nodes_to_exclude=nodes_to_exclude,
            nodes_to_quantize=nodes_to_quantize,
            extra_options=extra,
            calibration_cache_path=str(cache),
            use_external_data_format=large,
        )

    write(exclude)
    log.info("calibrated INT8 on %d samples (%s)", len(calib), method)
    info = {"precision": "int8", "mode": "static", "format": "QDQ", "weights": _weights(options),
            "activations": "u8 asymmetric", "calibration_method": method,
            "calibration_samples": len(calib), "op_types": ops or "all",
            "nodes_excluded": exclude}
    most = fallback.DEFAULT_MAX_FALLBACK if options.max_fallback is None else options.max_fallback
    if most > 0 and budget is not None and model is not None:
        from modelport.backends.onnxruntime.float_fallback import keep_fewest_float

        record = keep_fewest_float(pre, dst, write, calib, model.task, budget, most, exclude, ops)
        info["float_fallback"] = record
        info["nodes_excluded"] = exclude + [n for u in record["kept_float"] for n in u["nodes"]]
    return info


def _weights(options: OnnxRuntimeOptions) -> str:
    return "s8 per-channel" + (" (7-bit range: no u8s8 saturation on non-VNNI x86)"
                               if reduce_range(options) else "")
