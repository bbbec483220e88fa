"""The peers' own INT8 recipes for experiments/cnn_int8.py, each on the plain ONNX export and the
same calibration crops modelport got, with each tool's defaults (what a user who reads the tool's
quantization guide would run):

- ONNX Runtime: ``quant_pre_process`` (the guide's pre-processing step: shape inference and ORT's
  graph optimizations, which fold BatchNorm into Conv), then ``quantize_static`` with its defaults
  (QDQ, u8 activations, s8 per-tensor weights, MinMax), and the same with ``per_channel=True``.
- OpenVINO: ``nncf.quantize(ov.convert_model(onnx), nncf.Dataset(crops))`` with its defaults
  (preset PERFORMANCE, fast bias correction, subset_size 300), saved in f32 and compiled with the
  f32 inference-precision hint, as modelport's OpenVINO rows are.
- TFLite: onnx2tf -> SavedModel (the graph modelport's TFLite FP32 build made from this ONNX) ->
  ``TFLiteConverter`` full-integer: ``Optimize.DEFAULT``, a representative dataset of the crops,
  ``TFLITE_BUILTINS_INT8``, float input/output.

Each builder returns (label, session, info); sessions are modelport's own session classes, so
every artifact is timed through the same harness.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("cnn_int8")


def _feeds(name: str, x: np.ndarray):
    return [{name: x[i:i + 1]} for i in range(len(x))]


def onnxruntime_static(onnx_path: Path, calib: np.ndarray, tmp: Path, inputs, outputs,
                       threads: int | None = None):
    from onnxruntime.quantization import CalibrationDataReader, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from modelport.backends.onnxruntime.backend import OnnxRuntimeSession

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(_feeds(inputs[0].name, calib))

        def get_next(self):
            return next(self.rows, None)

    pre = tmp / "ort-pre.onnx"
    try:
        quant_pre_process(str(onnx_path), str(pre))
    except Exception as exc:  # noqa: BLE001 - the dynamo graph can fail symbolic shape inference
        log.info("quant_pre_process failed (%s); again with skip_symbolic_shape=True", exc)
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
    for per_channel in (False, True):
        dst = tmp / f"ort-static-pc{int(per_channel)}.onnx"
        quantize_static(str(pre), str(dst), Reader(), per_channel=per_channel)
        yield (f"ORT INT8, plain quantize_static{' per_channel=True' if per_channel else ''}",
               OnnxRuntimeSession(dst, inputs, outputs, threads=threads),
               {"backend": "onnxruntime", "recipe": "quant_pre_process + quantize_static("
                + ("per_channel=True" if per_channel else "defaults") + ")", "peer": True})


def nncf_default(onnx_path: Path, calib: np.ndarray, tmp: Path, inputs, outputs,
                 threads: int | None = None):
    import nncf
    import openvino as ov

    from modelport.backends.openvino.backend import OpenVINOSession

    quantized = nncf.quantize(ov.convert_model(str(onnx_path)),
                              nncf.Dataset(_feeds(inputs[0].name, calib)))
    xml = tmp / "ov-nncf-default.xml"
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    yield ("OpenVINO INT8, plain nncf.quantize",
           OpenVINOSession(xml, inputs, outputs, device="CPU", inference_precision="f32",
                           threads=threads),
           {"backend": "openvino", "recipe": "nncf.quantize defaults (f32 hint)", "peer": True})


def tflite_full_integer(model, calib: np.ndarray, tmp: Path, inputs, outputs,
                        threads: int | None = None):
    """``model``: the resolved model with ``onnx_artifact`` set to the plain export."""
    import tensorflow as tf

    from modelport import registry
    from modelport.backends.base import BuildOptions
    from modelport.backends.tflite import convert
    from modelport.backends.tflite.session import TFLiteSession
    from modelport.specs import Target

    # the onnx2tf graph of this very ONNX: modelport's FP32 TFLite build makes (or reuses) it
    target = Target.parse("tflite:cpu:fp32")
    workdir = tmp / "tflite-fp32-plain"
    workdir.mkdir()
    artifact = registry.get_backend("tflite")().build(model, target, None, workdir,
                                                      BuildOptions())
    key = convert._content_key(Path(model.onnx_artifact.path))
    graph = next(g for k, g in convert._GRAPHS.items() if k[0] == key)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(graph.saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    dst = tmp / "tflite-full-integer-plain.tflite"
    dst.write_bytes(converter.convert())
    yield ("TFLite INT8, plain converter full-integer",
           TFLiteSession(dst, artifact.inputs, artifact.outputs, threads=threads),
           {"backend": "tflite", "recipe": "TFLiteConverter Optimize.DEFAULT + representative "
            "dataset + TFLITE_BUILTINS_INT8, float I/O", "peer": True, "batches": (1,)})


BUILDERS: dict[str, Any] = {
    "onnxruntime": lambda model, calib, tmp, i, o, threads: onnxruntime_static(
        Path(model.onnx_artifact.path), calib, tmp, i, o, threads),
    "openvino": lambda model, calib, tmp, i, o, threads: nncf_default(
        Path(model.onnx_artifact.path), calib, tmp, i, o, threads),
    "tflite": tflite_full_integer,
}
