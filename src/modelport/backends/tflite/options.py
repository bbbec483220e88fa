"""TFLite build options (flags: --shape, --io, --tflite-float-ops, --tflite-*)."""

from __future__ import annotations

from dataclasses import dataclass

from modelport.backends.options import BackendOptions, comma_list, option
from modelport.shapes import SHAPE_HELP, parse_shape, parse_shapes  # noqa: F401 - re-exported

IO_CHOICES = ("float", "int8")
#: TFLite INT8 forms: every op int8 (microcontrollers); int8 weights with activations
#: quantized at run time; int16 activations with int8 weights
INT8_MODES = ("full-integer", "dynamic-range", "16x8")


def _upper_list(text: str) -> tuple[str, ...]:
    return tuple(op.upper() for op in comma_list(text))


@dataclass(frozen=True)
class TFLiteOptions(BackendOptions):
    shapes: dict | None = option(  # noqa: RUF009 - option() is a dataclasses.field
        flag="--shape", repeat=True, parse=parse_shapes, metavar="NAME=DIMS",
        help=SHAPE_HELP)
    io: str | None = option(
        flag="--io", choices=IO_CHOICES,
        help="TFLite INT8 input/output type (default float; int8 for microcontrollers: "
             "scales/zero points go in the bundle)")
    float_ops: tuple[str, ...] | None = option(
        flag="--tflite-float-ops", parse=_upper_list, metavar="OP,OP",
        help="TFLite INT8: keep these op types in float, e.g. SOFTMAX,MEAN")
    int8_mode: str | None = option(
        flag="--tflite-int8-mode", choices=INT8_MODES,
        help="TFLite INT8 form (default: per graph kind: attention graphs try dynamic-range, "
             "then 16x8, then full-integer, the first within the budget; others full-integer)")
    max_fallback: int | None = option(
        minimum=0, help="full-integer INT8: most layers kept in float, fewest first, when INT8 "
                        "misses the budget on a calibration slice (TensorFlow selective "
                        "quantization; the file is then not integer-only; 0 keeps every op int8; "
                        "default 8)")
    calib_samples: int | None = option(
        minimum=1, help="TFLite INT8: calibration samples the converter sees (default 200)")
