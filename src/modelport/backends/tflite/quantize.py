"""TFLiteConverter settings per precision, and the representative dataset over a CalibrationSet.

- FP32: builtin ops only (no Flex/SELECT_TF_OPS: the bare LiteRT interpreter cannot run them).
- FP16: weights stored as float16 and dequantized at load on CPUs without fp16 arithmetic
  (x86); the file is half the size, the arithmetic stays FP32.
- INT8: full-integer post-training quantization calibrated on the shared CalibrationSet, every
  op int8 (``TFLITE_BUILTINS_INT8``) so a microcontroller runtime can run it. Integer inputs
  (token ids, masks) stay integers; ``io="int8"`` makes float inputs/outputs int8 too, with
  their scale and zero point recorded in the bundle.
- INT8 ``dynamic-range``: int8 weights, activations quantized at run time (no representative
  dataset): keeps transformers (MiniLM cosine within 0.1% of FP32 where full-integer fell to
  0.31, ../shared/FINDINGS.md). ``16x8``: int16 activations, int8 weights, calibrated; builtin
  float kernels stay allowed for ops without a 16x8 kernel.
- ``float_ops`` (``--tflite-float-ops SOFTMAX,MEAN``): keep these TFLite op types in float
  (TensorFlow's selective quantization: QuantizationDebugger with ``denylisted_ops``). Not full
  integer any more: the manifest says which ops stayed float.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from modelport.backends.tflite.options import TFLiteOptions
from modelport.backends.tflite.signature import SIGNATURE_KEY, signature_name
from modelport.errors import BuildError, CalibrationDataError
from modelport.specs import Precision, Target, TensorSpec

log = logging.getLogger("modelport")

#: calibration samples used by default: ranges settle well before this; TF runs each sample
#: through a float interpreter, so more costs build time linearly
DEFAULT_CALIBRATION_SAMPLES = 300


class RepresentativeDataset:
    """TFLiteConverter's ``representative_dataset`` over a CalibrationSet.

    Yields dicts keyed by signature input name, stacked to the file's static batch size and
    padded (or cropped) to its static shape, cast to the dtypes the graph takes.
    """

    def __init__(self, calib, specs: list[TensorSpec], dtypes: list[np.dtype], *,
                 limit: int | None = None) -> None:
        if calib is None or len(calib) == 0:
            raise CalibrationDataError("TFLite INT8 needs calibration data: pass --calib")
        self.calib = calib
        self.specs = specs
        self.dtypes = dtypes
        batch = specs[0].shape[0]
        self.batch = batch
        wanted = limit or DEFAULT_CALIBRATION_SAMPLES
        self.samples = min(len(calib), max(wanted, batch)) // batch * batch
        if self.samples == 0:
            raise CalibrationDataError(
                f"TFLite INT8 at batch {batch} needs at least {batch} calibration samples, "
                f"got {len(calib)}"
            )

    def __call__(self) -> Iterator[dict[str, np.ndarray]]:
        from modelport.shapes import crop_or_pad

        subset = self.calib.take(self.samples)
        for feed in subset.batches(self.batch):
            fitted = crop_or_pad(feed, self.specs)
            yield {signature_name(s.name, i, "input"): fitted[s.name].astype(dtype)
                   for i, (s, dtype) in enumerate(zip(self.specs, self.dtypes, strict=True))}


def to_tflite(saved_model: Path, input_dtypes: list[np.dtype], target: Target, calib,
              specs: list[TensorSpec], options: TFLiteOptions, io: str, dst: Path, *,
              mode: str = "full-integer") -> dict[str, Any]:
    """Convert the SavedModel (saved once per graph, convert.py) to ``dst`` (INT8 in ``mode``);
    ``input_dtypes``: what the graph's inputs take. Returns the build facts."""
    import tensorflow as tf

    if target.precision == Precision.INT8 and mode != "full-integer":
        return _write(_reduced_int8(saved_model, input_dtypes, calib, specs, options, mode, tf),
                      target, dst)

    converter = _converter(saved_model, tf)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    info: dict[str, Any] = {"precision": str(target.precision), "converter": "TFLiteConverter"}
    float_ops: list[str] = []
    dataset = None
    if target.precision == Precision.FP16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        info["weights"] = "float16 (dequantized to float32 at load on CPUs without fp16)"
    elif target.precision == Precision.INT8:
        info["int8_mode"] = "full-integer"
        converter, dataset = full_integer_converter(saved_model, input_dtypes, calib, specs,
                                                    options, io)
        float_ops = [op.upper() for op in options.float_ops or []]
        info.update(quantization="full-integer post-training (TFLiteConverter)",
                    weights="int8 per-channel", activations="int8 per-tensor",
                    io=io, calibration_samples=dataset.samples,
                    calibration_batch=dataset.batch)
    elif target.precision != Precision.FP32:
        raise BuildError(f"TFLite has no {target.precision} target; use fp32, fp16 or int8")
    log.info("writing %s TFLite with TFLiteConverter%s ...", target.precision,
             f" (calibrating on {dataset.samples} samples)" if dataset else "")
    try:
        data = _selective(converter, dataset, float_ops, io) if float_ops else converter.convert()
    except Exception as exc:  # the converter raises ConverterError/ValueError/RuntimeError
        text = " ".join(str(exc).split())[:400]
        hint = ("; some op has no int8 kernel: keep it in float with --tflite-float-ops OP"
                if target.precision == Precision.INT8 else "")
        raise BuildError(f"TFLiteConverter failed for {target}: {text}{hint}") from exc
    if float_ops:
        info.update(quantization="int8 with float ops (selective: QuantizationDebugger "
                                 "denylisted_ops)", float_ops=float_ops)
    dst.write_bytes(data)
    return info


def full_integer_converter(saved_model: Path, input_dtypes: list[np.dtype], calib,
                           specs: list[TensorSpec], options: TFLiteOptions, io: str):
    """(converter, representative dataset) for full-integer INT8: every op int8, float or
    int8 I/O; also what the float-fallback search (float_fallback.py) calibrates."""
    import tensorflow as tf

    converter = _converter(saved_model, tf)
    dataset = RepresentativeDataset(calib, specs, input_dtypes, limit=options.calib_samples)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io == "int8":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter, dataset


def _selective(converter, dataset, float_ops: list[str], io: str) -> bytes:
    """Quantize everything but ``float_ops`` (TensorFlow's selective quantization)."""
    import tensorflow as tf

    # float islands need float kernels next to the int8 ones
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                           tf.lite.OpsSet.TFLITE_BUILTINS]
    debug_options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=float_ops, fully_quantize=io == "int8")
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=dataset, debug_options=debug_options)
    return debugger.get_nondebug_quantized_model()


def _converter(saved_model: Path, tf):
    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model),
                                                    signature_keys=[SIGNATURE_KEY])


def _reduced_int8(saved_model: Path, dtypes, calib, specs, options: TFLiteOptions, mode: str,
                  tf):
    """(converter, info) for the dynamic-range and 16x8 modes: float I/O, float kernels
    allowed where a quantized one is missing."""
    converter = _converter(saved_model, tf)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    info: dict[str, Any] = {"precision": "int8", "converter": "TFLiteConverter",
                            "int8_mode": mode, "io": "float"}
    if mode == "dynamic-range":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        info.update(quantization="dynamic-range (TFLiteConverter Optimize.DEFAULT, no "
                                 "representative dataset)",
                    weights="int8", activations="float, quantized to int8 at run time")
        return converter, info
    dataset = RepresentativeDataset(calib, specs, dtypes, limit=options.calib_samples)
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS]
    info.update(quantization="16x8 post-training (int16 activations, int8 weights)",
                weights="int8 per-channel", activations="int16",
                calibration_samples=dataset.samples, calibration_batch=dataset.batch)
    return converter, info


def _write(converter_info, target: Target, dst: Path) -> dict[str, Any]:
    converter, info = converter_info
    log.info("writing %s TFLite (%s) with TFLiteConverter ...", target.precision,
             info["int8_mode"])
    try:
        data = converter.convert()
    except Exception as exc:  # the converter raises ConverterError/ValueError/RuntimeError
        text = " ".join(str(exc).split())[:400]
        raise BuildError(f"TFLiteConverter failed for {target} in {info['int8_mode']} mode: "
                         f"{text}; try another --tflite-int8-mode") from exc
    dst.write_bytes(data)
    return info
