"""ONNX quantization helpers that ONNX Runtime INT8 and TensorRT Q/DQ share.

Both make their INT8 graphs with ``onnxruntime.quantization``: the same pre-processing, the
same calibration reader over the shared CalibrationSet, the same test for attention's
activation x activation MatMuls.
"""

from __future__ import annotations

from pathlib import Path


def preprocess(src: Path, dst: Path) -> None:
    """ORT's quantization pre-processing (ONNX shape inference + optimization)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # symbolic shape inference fails on dynamo-exported transformers (FINDINGS.md); ONNX shape
    # inference is enough
    quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def activation_matmuls(path: Path) -> list[str]:
    """MatMuls of two activations (attention's Q.K^T and P.V): no weight to quantize, and
    ranges that static calibration captures badly."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node
            if n.op_type == "MatMul" and not any(i in constants for i in n.input[:2])]


class CalibrationReader:
    """CalibrationDataReader over a CalibrationSet, with a progress bar (ORT and TensorRT Q/DQ)."""

    def __init__(self, calib, desc: str = "calibrating INT8 (onnxruntime)") -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=len(calib), desc=desc, unit="sample", leave=False)
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
