"""OpenVINO build options (flags: --accuracy-control, --max-drop, --openvino-*)."""

from __future__ import annotations

from dataclasses import dataclass

from modelport.backends.options import BackendOptions, option
from modelport.shapes import SHAPE_HELP, parse_shapes

AC_METRICS = ("cosine", "accuracy", "top1")
#: which ops NNCF may quantize (openvino/quantize.py ``ignored_scope``); weights-only: int8
#: weights and float activations (``nncf.compress_weights``, no calibration)
INT8_SCOPES = ("all", "no-attention-matmul", "fc-only", "weights-only")


#: NNCF presets: mixed = symmetric weights, asymmetric activations; performance = both symmetric
PRESETS = ("mixed", "performance")


def _smooth(text: str) -> float | bool | str:
    if str(text).lower() in ("off", "false", "0", "no"):
        return False
    if str(text).lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise ValueError("use an alpha in (0, 1], 'auto' or 'off'") from None


@dataclass(frozen=True)
class OpenVINOOptions(BackendOptions):
    accuracy_control: bool = option(
        False, flag="--accuracy-control",
        help="OpenVINO INT8: when INT8 misses the budget, keep the most sensitive layers in "
             "float until it fits (NNCF accuracy control)")
    max_drop: float | None = option(
        flag="--max-drop", minimum=0.0, maximum=0.999, metavar="X",
        help="accuracy control: allowed drop, a fraction (accuracy for labelled classifiers, "
             "top-1 agreement for classifiers without labels, mean cosine otherwise; default: "
             "from the budget)")
    accuracy_metric: str | None = option(
        choices=AC_METRICS, help="accuracy control metric (default: the one the budget "
                                 "judges by: accuracy for labelled classifiers, top1 (top-1 "
                                 "agreement) for classifiers without labels, cosine otherwise)")
    #: static input shapes (--shape, shared with TFLite): applied at load (runtime settings)
    shapes: dict | None = option(  # noqa: RUF009 - option() is a dataclasses.field
        flag="--shape", repeat=True, parse=parse_shapes, metavar="NAME=DIMS", help=SHAPE_HELP)
    max_fallback: int | None = option(
        minimum=0, help="OpenVINO INT8: most layers kept in float (NNCF ignored_scope), fewest "
                        "first, when INT8 misses the budget on a calibration slice (ranked by "
                        "the error each adds; 0 turns it off; --accuracy-control replaces it; "
                        "default 8)")
    model_type: str | None = option(
        choices=("transformer", "default"),
        help="NNCF model type (default: transformer when the graph has attention)")
    smooth_quant: float | bool | str | None = option(
        parse=_smooth, metavar="ALPHA|auto|off",
        help="SmoothQuant alpha for transformer INT8; 'auto' builds one INT8 model per alpha "
             "(0.95, 0.9, 0.8, 0.7) and keeps the closest to FP32 on the calibration data; "
             "'off' (default: NNCF's, 0.95)")
    preset: str | None = option(
        choices=PRESETS,
        help="OpenVINO INT8: NNCF preset: mixed (asymmetric activations) or performance "
             "(symmetric activations: no zero points) (default: mixed for transformers, "
             "performance otherwise)")
    int8_scope: str | None = option(
        choices=INT8_SCOPES,
        help="OpenVINO INT8: what NNCF quantizes: all (NNCF's choice), no-attention-matmul "
             "(MatMuls of two activations stay float), fc-only (only MatMuls with constant "
             "weights), weights-only (int8 weights, float activations: what pays on a CPU "
             "without VNNI) (default: the CPU recipe, backends/cpu_recipes.py)")
    inference_precision: str | None = option(
        choices=("f32", "f16", "bf16"),
        help="CPU plugin INFERENCE_PRECISION_HINT (default: the target's precision)")
    group_size: int | None = option(
        minimum=-1, help="INT4 weight-only: weights per quantization group (-1: per channel; "
                         "default 32)")
    ratio: float | None = option(
        above=0.0, maximum=1.0, help="INT4 weight-only: fraction of weights in 4 bit, the rest "
                                     "in 8 bit (default 1.0)")
    asymmetric: bool = option(
        False, help="INT4 weight-only: INT4_ASYM (a zero point per group) instead of INT4_SYM")
    awq: bool = option(
        False, help="INT4 weight-only: data-aware AWQ on the calibration text (slower build)")
    scale_estimation: bool = option(
        False, help="INT4 weight-only: data-aware scale estimation on the calibration text")
