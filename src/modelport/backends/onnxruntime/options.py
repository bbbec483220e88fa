"""ONNX Runtime build options (flags: --int8-mode, --calib-method, --onnxruntime-*)."""

from __future__ import annotations

from dataclasses import dataclass

from modelport.backends.options import BackendOptions, comma_list, option
from modelport.shapes import SHAPE_HELP, parse_shapes

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class OnnxRuntimeOptions(BackendOptions):
    int8_mode: str | None = option(
        help="ONNX Runtime INT8 flavour (default: measured per model kind: dynamic for "
             "attention graphs, static QDQ otherwise)",
        flag="--int8-mode", choices=("static", "dynamic"))
    #: static input shapes (--shape, shared with TFLite): applied at load (runtime settings)
    shapes: dict | None = option(  # noqa: RUF009 - option() is a dataclasses.field
        flag="--shape", repeat=True, parse=parse_shapes, metavar="NAME=DIMS", help=SHAPE_HELP)
    calib_method: str | None = option(
        help="static INT8 calibration (ONNX Runtime minmax; TensorRT percentile)",
        flag="--calib-method", choices=CALIBRATION_METHODS)
    full_range: bool = option(
        False, help="INT8: quantize weights to the full 8-bit range (faster to build for a VNNI "
                    "CPU only; wrong results can follow on x86 without VNNI)")
    op_types: tuple[str, ...] | None = option(
        help="INT8: quantize only these op types (default MatMul,Gemm for dynamic, all for "
             "static)", parse=comma_list, metavar="OP,OP")
    nodes_to_exclude: tuple[str, ...] | None = option(
        help="INT8: keep these nodes in float", parse=comma_list, metavar="NODE,NODE")
    max_fallback: int | None = option(
        minimum=0, help="static INT8: most layers kept in float, fewest first, when INT8 misses "
                        "the budget on a calibration slice (ranked by the error each adds; 0 "
                        "turns it off; default 8)")
    block_size: int | None = option(
        minimum=16, help="INT4/INT8WO weight-only: weights per quantization block along the "
                         "input dimension (MatMulNBits; a power of 2 >= 16; default 32)")
    asymmetric: bool = option(
        False, help="INT4/INT8WO weight-only: asymmetric blocks (a zero point per block; "
                    "default symmetric)")
    accuracy_level: int | None = option(
        minimum=0, maximum=4, help="INT4/INT8WO weight-only: MatMulNBits accuracy_level, the "
                                   "activation precision of the kernel (0 unset = fp32, 1 fp32, "
                                   "2 fp16, 3 bf16, 4 int8; default 4: int8 activations, as "
                                   "onnxruntime-genai's builder on CPU)")
