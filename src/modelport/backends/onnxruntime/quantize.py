"""INT8 for ONNX Runtime with ``onnxruntime.quantization``, fed by the shared CalibrationSet."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Probe:
    """What judges variants and fallback trials: ``data``, a slice of the calibration data
    (never the evaluation split), against ``graph``, the float graph as exported (before any
    CNN recipe: the target is judged against the original model, not the prepared one)."""

    data: Any
    graph: Path
    where: str


def quantize_int8(src: Path, dst: Path, calib, model, options: OnnxRuntimeOptions, *,
                  budget=None, probe: Probe | None = None,
                  shifts: dict[str, Any] | None = None) -> dict[str, Any]:
    """INT8 of ``src`` into ``dst``: dynamic, or static QDQ with the float fallback (judged on
    ``probe``; default: the first calibration samples against ``src``). ``shifts``: the CNN
    recipe's bias-correction shifts (a layer kept float gets its own bias back)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    mode = options.int8_mode or default_mode(src)
    if mode not in INT8_MODES:
        raise BuildError(f"unknown INT8 mode '{mode}': use one of {', '.join(INT8_MODES)}")
    with tempfile.TemporaryDirectory(prefix="modelport-ort-") as tmp:
        if mode == "dynamic":
            pre = Path(tmp) / "pre.onnx"
            onnx_qdq.preprocess(src, pre)  # by module: the fault tests patch it there
            ops = list(options.op_types or ["MatMul", "Gemm"])
            quantize_dynamic(
                str(pre), str(dst), op_types_to_quantize=ops, weight_type=QuantType.QInt8,
                per_channel=True, reduce_range=reduce_range(options),
                extra_options={"MatMulConstBOnly": True},
                use_external_data_format=onnx_qdq.is_large(pre),
            )
            return {"precision": "int8", "mode": "dynamic", "weights": _weights(options),
                    "activations": "u8 dynamic (per batch)", "op_types": ops}
        build = StaticBuild(src, dst, calib, options, Path(tmp), shifts=shifts)
        if probe is None and calib is not None:
            probe = Probe(calib.take(fallback.PROBE_SAMPLES), Path(src),
                          f"first {min(len(calib), fallback.PROBE_SAMPLES)} calibration samples "
                          "(never the evaluation split)")
        return build.fall_back(model, budget, probe)


class StaticBuild:
    """Static QDQ INT8 of one graph: calibrated once (``ranges.json``), re-written for each
    float-fallback trial; ``dst`` holds the latest build."""

    def __init__(self, src: Path, dst: Path, calib, options: OnnxRuntimeOptions, tmp: Path, *,
                 shifts: dict[str, Any] | None = None) -> None:
        if calib is None or len(calib) == 0:
            raise CalibrationDataError("static INT8 needs calibration data: pass --calib")
        method = options.calib_method or "minmax"
        if method not in CALIBRATION_METHODS:
            raise BuildError(f"unknown calibration method '{method}': use one of "
                             f"{', '.join(CALIBRATION_METHODS)}")
        self.pre, self.dst, self.calib, self.options = tmp / "pre.onnx", dst, calib, options
        onnx_qdq.preprocess(src, self.pre)  # by module: the fault tests patch it there
        # over 2 GB the quantized model keeps its weights in dst.name + ".data"
        self.large = onnx_qdq.is_large(self.pre)
        self.method, self.cache, self.shifts = method, tmp / "ranges.json", dict(shifts or {})
        self.exclude = list(options.nodes_to_exclude or [])
        self.write(self.exclude)
        log.info("calibrated INT8 on %d samples (%s)", len(calib), method)
        self.info = {"precision": "int8", "mode": "static", "format": "QDQ",
                     "weights": _weights(options), "activations": "u8 asymmetric",
                     "calibration_method": method, "calibration_samples": len(calib),
                     "op_types": options.op_types or "all", "nodes_excluded": self.exclude}

    def write(self, nodes_to_exclude: list[str], nodes_to_quantize: list[str] | None = None
              ) -> None:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
        if self.method == "percentile":
            extra["CalibPercentile"] = 99.999
        quantize_static(
            str(self._source(nodes_to_exclude, nodes_to_quantize)), str(self.dst),
            None if self.cache.exists() else CalibrationReader(self.calib),
            quant_format=QuantFormat.QDQ,
            # u8 activations + s8 weights: s8s8 QDQ ran slower than FP32 on this x86 CPU
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range(self.options),
            calibrate_method=methods[self.method],
            op_types_to_quantize=self.options.op_types,
            nodes_to_exclude=nodes_to_exclude,
            nodes_to_quantize=nodes_to_quantize,
            extra_options=extra,
            calibration_cache_path=str(self.cache),
            use_external_data_format=self.large,
        )

    def _source(self, exclude: list[str], only: list[str] | None) -> Path:
        """The graph to quantize: ``pre``, with the bias correction of every layer that stays
        float undone (its weights are not rounded, so the shift would be an error of its own)."""
        if not self.shifts:
            return self.pre
        floats = set(exclude) | (set(self.shifts) - set(only) if only is not None else set())
        floats &= set(self.shifts)
        if not floats:
            return self.pre
        import onnx

        from modelport.graph_prep.bias_correction import undo

        model = onnx.load(str(self.pre))
        undo(model, self.shifts, floats)
        restored = self.pre.with_name("pre_float_biases.onnx")
        onnx.save(model, str(restored))
        return restored

    def fall_back(self, model, budget, probe: Probe | None) -> dict[str, Any]:
        """The float fallback on this build (when on, needed and a budget is known); returns
        the manifest facts. ``dst`` holds the shipped build afterwards."""
        info = dict(self.info)
        most = self.options.max_fallback
        most = fallback.DEFAULT_MAX_FALLBACK if most is None else most
        if most > 0 and budget is not None and model is not None and probe is not None:
            from modelport.backends.onnxruntime.float_fallback import keep_fewest_float

            record = keep_fewest_float(self.pre, self.dst, self.write, probe, model.task,
                                       budget, most, self.exclude, self.options.op_types)
            info["float_fallback"] = record
            info["nodes_excluded"] = self.exclude + [n for u in record["kept_float"]
                                                     for n in u["nodes"]]
        return info


def _weights(options: OnnxRuntimeOptions) -> str:
    return "s8 per-channel" + (" (7-bit range: no u8s8 saturation on non-VNNI x86)"
                               if reduce_range(options) else "")
