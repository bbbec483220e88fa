"""Fallback: PyTorch -> .tflite with litert-torch when onnx2tf cannot convert the ONNX.

litert-torch (``litert_torch.convert``, torch.export underneath) needs no TensorFlow but pulls
jaxlib (~2 GB) and pins an older typing_extensions, so it is not part of any modelport extra:
install it in its own environment. Used automatically when importable and onnx2tf failed;
the manifest records ``conversion_path: litert-torch`` and onnx2tf's error.

- FP32: ``litert_torch.convert(module, sample_kwargs=...)`` at the static shape; int64 inputs
  become int32 in the file (litert-torch's default), the session casts token ids back and forth.
- INT8: PT2E static quantization with litert-torch's PT2EQuantizer (symmetric int8, per-channel
  weights), observers fed by the shared CalibrationSet. The file's I/O is what litert-torch makes
  (int8 with scales for digits-cnn, measured); the manifest records it and the session
  quantizes/dequantizes, so ``--io`` is not honoured on this path.
- FP16: not offered on this path (litert-torch has no weight-fp16 switch in its v1 converter).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from modelport.backends.base import has_module
from modelport.backends.tflite.options import TFLiteOptions
from modelport.errors import BuildError, CalibrationDataError
from modelport.specs import Precision, Target, TensorSpec

log = logging.getLogger("modelport")


def available() -> bool:
    return has_module("litert_torch") and has_module("torch")


def convert_with_litert_torch(model, target: Target, calib, specs: list[TensorSpec],
                              options: TFLiteOptions, io: str, dst: Path) -> dict[str, Any]:
    """Write ``dst`` from ``model.module``; returns the manifest's build facts."""
    import litert_torch
    import torch

    from modelport.backends.tflite.quantize import DEFAULT_CALIBRATION_SAMPLES
    from modelport.shapes import crop_or_pad

    module = model.module.eval()
    batch = specs[0].shape[0]
    example = crop_or_pad(model.fresh_inputs(batch), specs)
    sample_kwargs = {k: torch.from_numpy(v) for k, v in example.items()}
    info: dict[str, Any] = {"precision": str(target.precision), "conversion_path": "litert-torch",
                            "litert_torch_version": litert_torch.__version__}
    if target.precision == Precision.FP32:
        edge = litert_torch.convert(module, sample_kwargs=sample_kwargs)
    elif target.precision == Precision.INT8:
        if calib is None or len(calib) == 0:
            raise CalibrationDataError("TFLite INT8 needs calibration data: pass --calib")
        from litert_torch.quantize import pt2e_quantizer
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e import quantize_pt2e

        quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
        exported = torch.export.export(module, (), kwargs=sample_kwargs).module()
        prepared = quantize_pt2e.prepare_pt2e(exported, quantizer)
        limit = int(options.calib_samples or DEFAULT_CALIBRATION_SAMPLES)
        samples = calib.take(max(limit, batch) // batch * batch)
        log.info("calibrating PT2E INT8 on %d samples ...", len(samples))
        with torch.no_grad():
            for feed in samples.batches(batch):
                prepared(**{k: torch.from_numpy(v) for k, v in crop_or_pad(feed, specs).items()})
        converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
        edge = litert_torch.convert(converted, sample_kwargs=sample_kwargs,
                                    quant_config=QuantConfig(pt2e_quantizer=quantizer))
        info.update(quantization="PT2E static (litert-torch PT2EQuantizer)",
                    weights="int8 symmetric per-channel", activations="int8 symmetric",
                    calibration_samples=len(samples), calibration_batch=batch)
    else:
        raise BuildError(f"{target} is not available on the litert-torch fallback path "
                         "(fp32 and int8 are); onnx2tf failed for this model")
    edge.export(str(dst))
    return info
