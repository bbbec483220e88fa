"""TensorRT build options (flags: --trt-profile, --trt-workspace, --calib-method, --tensorrt-*)."""

from __future__ import annotations

from dataclasses import dataclass

from modelport.backends.options import BackendOptions, comma_list, option
from modelport.backends.tensorrt.engine import parse_axes

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class TensorRTOptions(BackendOptions):
    profile: dict | None = option(  # noqa: RUF009 - option() is a dataclass field
        flag="--trt-profile", parse=parse_axes, metavar="AXIS=MIN:OPT:MAX,...",
        help="TensorRT optimization profile per dynamic axis (default batch=1:8:64,"
             "seq=1:128:256)")
    workspace_mib: int | None = option(
        flag="--trt-workspace", minimum=1, metavar="MIB",
        help="TensorRT builder workspace in MiB (4096)")
    calib_method: str | None = option(
        flag="--calib-method", choices=CALIBRATION_METHODS,
        help="static INT8 calibration (ONNX Runtime minmax; TensorRT percentile)")
    op_types: tuple[str, ...] | None = option(
        parse=comma_list, metavar="OP,OP", help="INT8 Q/DQ: quantize only these op types")
    nodes_to_exclude: tuple[str, ...] | None = option(
        parse=comma_list, metavar="NODE,NODE", help="INT8 Q/DQ: keep these nodes in float")
    max_fallback: int | None = option(
        minimum=0, help="INT8 Q/DQ: most layers kept in float, fewest first, when the graph "
                        "misses the budget on a calibration slice (ranked by the quantization "
                        "SNR of their input; 0 turns it off; default 8)")
