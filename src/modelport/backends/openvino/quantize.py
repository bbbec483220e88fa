"""INT8 for OpenVINO with NNCF, fed by the shared CalibrationSet; optional accuracy control.

Choices, each measured on all-MiniLM-L6-v2 (eval split of the built-in sentences, mean cosine
vs FP32; bench/RESULTS.md):
- ``model_type=TRANSFORMER`` for graphs with attention (a Softmax and a MatMul of two
  activations). The default preset on MiniLM gave mean cosine 0.145: broken. Detected from the
  graph, not from ``PreparedModel.task``, so a user's ``.onnx`` / ``file.py`` transformer gets
  it too; ``OpenVINOOptions.model_type`` ("transformer" / "default") overrides.
- SmoothQuant kept on for transformers (NNCF's alpha 0.95): 0.9976 with it vs 0.9926 without.
  ``OpenVINOOptions.smooth_quant``: False, or an alpha in (0, 1], overrides.
- ``subset_size=len(calib)``: NNCF otherwise silently stops at 300 samples.

Accuracy control (``OpenVINOOptions.accuracy_control``): when the INT8 model misses the budget on the
validation data, ``nncf.quantize_with_accuracy_control`` reverts the most sensitive layers to
float until the drop is within ``max_drop``. The metric is the project's own
(``modelport.metrics.fidelity`` vs the FP32 IR's outputs), the one the budget judges by:
accuracy for labelled classifiers, top-1 agreement for classifiers without labels, mean cosine
otherwise. Validation uses the calibration set, so the evaluation split the pipeline
judges the bundle on stays unseen by every build decision.
"""

from __future__ import annotations

import importlib.metadata
import logging
from typing import Any

import numpy as np

from modelport.backends.openvino.nncf_output import quiet
from modelport.backends.openvino.options import (
    AC_METRICS,
    INT8_SCOPES,
    PRESETS,
    OpenVINOOptions,
)
from modelport.errors import CalibrationDataError, UsageError
from modelport.metrics import Budget, fidelity

log = logging.getLogger("modelport")

MODEL_TYPES = ("transformer", "default")
#: ops that move or select values: a quantizer before one quantizes the op after it
_PASS_THROUGH = {"MaxPool", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split",
                 "VariadicSplit", "StridedSlice", "Slice", "Gather", "Flatten", "DepthToSpace",
                 "SpaceToDepth", "Pad"}


#: calibration lines a KV-cache LM's static INT8 uses (as AWQ's data-aware compression)
LM_CALIB_LINES = 128


def quantize_int8(ov_model, calib, model, options: OpenVINOOptions, *,
                  device: str = "CPU", budget: Budget | None = None) -> tuple[Any, dict[str, Any]]:
    """Quantize ``ov_model`` (an openvino.Model) on ``calib``; return (model, manifest info)."""
    import nncf

    if options.int8_scope == "weights-only":
        return _weights_only(ov_model, options)
    if calib is None or len(calib) == 0:
        raise CalibrationDataError("OpenVINO INT8 needs calibration data: pass --calib")
    model_type, why = _model_type(ov_model, options)
    smooth = options.smooth_quant
    preset = _preset(model_type, options)
    kwargs = _nncf_kwargs(model_type, None if smooth == "auto" else smooth, device,
                          subset_size=len(calib), preset=preset)
    scope = options.int8_scope or "all"
    ignored = ignored_scope(ov_model, scope)
    if ignored is not None:
        kwargs["ignored_scope"] = ignored
    counter = _Counter()
    # a KV-cache LM: each line as a full prefill feed (mask, positions, empty past); its budget
    # is perplexity, judged after the build (lm_steps), so no per-output float fallback here
    lm = any(port.get_any_name().startswith("past_key_values.") for port in ov_model.inputs)
    if lm:
        from modelport.backends.openvino.weight_only import prefill_samples

        calib = list(prefill_samples(ov_model, calib))[:LM_CALIB_LINES]
        kwargs["subset_size"] = len(calib)
    dataset = nncf.Dataset(calib, counter)
    alpha_info = None
    if smooth == "auto":  # one build per alpha, the closest to FP32 on the calibration set
        from modelport.backends.openvino.smooth_alpha import choose_alpha

        def quantize_at(alpha: float, samples: list):  # kwargs keep the ignored scope
            return quiet(nncf.quantize, ov_model, nncf.Dataset(samples, counter), **{
                **kwargs, **_nncf_kwargs(model_type, alpha, device, subset_size=len(samples),
                                         preset=preset)})

        quantized, smooth, alpha_info = choose_alpha(
            ov_model, list(calib), quantize_at,
            _outputs, model.task if model is not None else "")
        kwargs = {**kwargs, **_nncf_kwargs(model_type, smooth, device,
                                           subset_size=kwargs["subset_size"], preset=preset)}
    else:
        quantized = quiet(nncf.quantize, ov_model, dataset, **kwargs)
    log.info("NNCF calibrated INT8 on %d of %d calibration samples (model type %s)",
             len(counter.seen), len(calib), model_type)
    info: dict[str, Any] = {
        "quantizer": f"nncf {importlib.metadata.version('nncf')}",
        "model_type": model_type, "model_type_reason": why,
        "preset": preset,
        "smooth_quant": _smooth_alpha(model_type, smooth),
        **({"smooth_quant_search": alpha_info} if alpha_info else {}),
        "calibration_samples": len(calib), "calibration_samples_used": len(counter.seen),
        "quantized_layers": len(quantized_layers(quantized)),
        "int8_scope": scope,
    }
    if options.accuracy_control:
        quantized, info["accuracy_control"] = _accuracy_control(
            ov_model, quantized, calib, model, options, kwargs, budget or Budget())
    elif (options.max_fallback is None or options.max_fallback > 0) and model is not None \
            and not lm:
        from modelport.backends.fallback import DEFAULT_MAX_FALLBACK
        from modelport.backends.openvino.float_fallback import keep_fewest_float

        quantized, info["float_fallback"] = keep_fewest_float(
            ov_model, quantized, calib, model.task, budget or Budget(),
            DEFAULT_MAX_FALLBACK if options.max_fallback is None else options.max_fallback, kwargs,
            run=_outputs, pass_through=_PASS_THROUGH)
    return quantized, info


def _weights_only(ov_model, options: OpenVINOOptions) -> tuple[Any, dict[str, Any]]:
    """INT8 weights, float activations: no quantize/dequantize between layers, so nothing to
    lose where the CPU has no one-instruction int8 dot product (backends/cpu_recipes.py)."""
    from modelport.backends.openvino.weight_only import compress_weights
    from modelport.specs import Precision

    if options.accuracy_control:
        log.info("accuracy control is not needed for weights-only INT8 (no activation "
                 "quantization); skipped")
    compressed, info = compress_weights(ov_model, Precision.INT8WO, None, options)
    return compressed, {"quantizer": f"nncf {importlib.metadata.version('nncf')}",
                        "int8_scope": "weights-only", "activations": "float (not quantized)",
                        "int8_weights": int8_constants(compressed), **info}


def int8_constants(ov_model) -> int:
    """Weight tensors stored in 8 bit (``compress_weights`` leaves no FakeQuantize to count)."""
    return sum(1 for op in ov_model.get_ordered_ops() if op.get_type_name() == "Constant"
               and op.get_output_element_type(0).get_type_name() in ("u8", "i8"))


# -- choices -----------------------------------------------------------------------------------
def _model_type(ov_model, options: OpenVINOOptions) -> tuple[str, str]:
    forced = options.model_type
    if forced is not None:
        if forced not in MODEL_TYPES:
            raise UsageError(f"unknown model type '{forced}': use one of {', '.join(MODEL_TYPES)}")
        return forced, "set by the user"
    if has_attention(ov_model):
        return "transformer", "graph has attention (Softmax + MatMul of two activations)"
    return "default", "no attention in the graph"


def has_attention(ov_model) -> bool:
    """A Softmax and a MatMul whose two inputs are both activations (Q·Kᵀ, scores·V)."""
    ops = ov_model.get_ordered_ops()
    if not any(op.get_type_name() == "Softmax" for op in ops):
        return False
    return any(op.get_type_name() == "MatMul" and not any(_is_constant(i) for i in op.inputs())
               for op in ops)


def activation_matmuls(ov_model) -> list[str]:
    """MatMuls whose two inputs are activations (attention's Q x K^T and scores x V)."""
    return [op.get_friendly_name() for op in ov_model.get_ordered_ops()
            if op.get_type_name() == "MatMul" and not any(_is_constant(i) for i in op.inputs())]


def ignored_scope(ov_model, scope: str):
    """The NNCF IgnoredScope of an ``int8_scope``: None for all. Without VNNI the int8 kernels
    gain little over FP32 and every quantize/dequantize costs; fewer, larger int8 ops may pay
    where NNCF's full placement does not (experiments/int8_recipes.py measures each)."""
    import nncf

    if scope not in INT8_SCOPES:
        raise UsageError(f"unknown int8_scope '{scope}': use one of {', '.join(INT8_SCOPES)}")
    if scope == "all":
        return None
    names = activation_matmuls(ov_model)
    if scope == "no-attention-matmul":
        return nncf.IgnoredScope(names=names, validate=False)
    types = sorted({op.get_type_name() for op in ov_model.get_ordered_ops()}
                   - {"MatMul", "Parameter", "Result", "Constant"})
    return nncf.IgnoredScope(names=names, types=types, validate=False)


def _is_constant(port) -> bool:
    node = port.get_source_output().get_node()
    while node.get_type_name() in ("Convert", "Reshape", "Transpose", "Unsqueeze"):
        node = node.input(0).get_source_output().get_node()
    return node.get_type_name() == "Constant"


def _preset(model_type: str, options: OpenVINOOptions) -> str:
    """NNCF's preset: mixed (asymmetric activations) for transformers, whose activations after
    GELU are one-sided; performance (symmetric) otherwise; ``OpenVINOOptions.preset`` overrides."""
    if options.preset is not None:
        if options.preset not in PRESETS:
            raise UsageError(f"unknown preset '{options.preset}': use one of "
                             f"{', '.join(PRESETS)}")
        return options.preset
    return _nncf_default_preset(model_type)


def _nncf_default_preset(model_type: str) -> str:
    """What ``nncf.quantize`` picks when no preset is passed."""
    return "mixed" if model_type == "transformer" else "performance"


def _smooth_alpha(model_type: str, smooth: Any) -> float | bool:
    if smooth is False:
        return False
    if smooth is None or smooth is True:
        return 0.95 if model_type == "transformer" else False
    return float(smooth)


def _nncf_kwargs(model_type: str, smooth: Any, device: str, *, subset_size: int,
                 preset: str | None = None) -> dict[str, Any]:
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )

    kwargs: dict[str, Any] = {
        "subset_size": subset_size,
        "target_device": nncf.TargetDevice.CPU if device == "CPU" else nncf.TargetDevice.ANY,
    }
    if model_type == "transformer":
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if preset is not None and preset != _nncf_default_preset(model_type):  # else implicit
        kwargs["preset"] = nncf.QuantizationPreset(preset)
    alpha = _smooth_alpha(model_type, smooth)
    if alpha is not False and not 0.0 < alpha <= 1.0:
        raise UsageError(f"smooth_quant alpha must be in (0, 1], got {alpha}")
    if smooth is not None:
        kwargs["advanced_parameters"] = AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(
                matmul=-1 if alpha is False else alpha))
    return kwargs


# -- accuracy control ----------------------------------------------------------------------------
def _accuracy_control(ov_model, quantized, calib, model, options: OpenVINOOptions,
                      kwargs: dict[str, Any], budget: Budget) -> tuple[Any, dict[str, Any]]:
    import nncf

    metric, key, max_drop = ac_settings(model, calib, options, budget)
    reference = _outputs(ov_model, calib.samples)
    indices = list(range(len(calib)))
    validation = nncf.Dataset(indices, lambda i: calib.samples[i])

    def validate(compiled, items) -> float:
        items = list(items)
        got = _run_compiled(compiled, [calib.samples[i] for i in items])
        ref = {k: v[items] for k, v in reference.items()}
        labels = calib.labels[items] if calib.labels is not None else None
        return fidelity(got, ref, task=model.task, labels=labels)[key]

    fp32_metric = validate(_compile(ov_model), indices)
    int8_metric = validate(_compile(quantized), indices)
    report: dict[str, Any] = {"metric": metric, "max_drop": max_drop,
                              "validation": f"calibration set ({len(calib)} samples)",
                              "fp32": fp32_metric, "int8": int8_metric}
    if fp32_metric - int8_metric <= max_drop:
        log.info("INT8 is within max_drop %.4g on %s (%.5f vs FP32 %.5f): no layer kept in float",
                 max_drop, metric, int8_metric, fp32_metric)
        return quantized, {**report, "needed": False, "kept_float": [], "final": int8_metric}
    log.info("INT8 %s %.5f vs FP32 %.5f misses max_drop %.4g: accuracy control reverts the most "
             "sensitive layers to float ...", metric, int8_metric, fp32_metric, max_drop)
    ac_kwargs = dict(kwargs)
    if "advanced_parameters" in ac_kwargs:
        ac_kwargs["advanced_quantization_parameters"] = ac_kwargs.pop("advanced_parameters")
    restored = quiet(nncf.quantize_with_accuracy_control, ov_model, nncf.Dataset(calib),
                      validation, validate, max_drop=max_drop, **ac_kwargs)
    kept = sorted(quantized_layers(quantized) - quantized_layers(restored))
    if not quantized_layers(restored):
        log.warning("accuracy control reverted every quantized layer: this INT8 model runs in "
                    "float; raise max_drop or keep the FP32 target")
    final = validate(_compile(restored), indices)
    log.info("accuracy control kept %d layer(s) in float; %s %.5f (FP32 %.5f)", len(kept), metric,
             final, fp32_metric)
    return restored, {**report, "needed": True, "kept_float": kept, "final": final,
                      "met": bool(fp32_metric - final <= max_drop + 1e-12)}


def ac_settings(model, calib, options: OpenVINOOptions,
                budget: Budget | None = None) -> tuple[str, str, float]:
    """(metric name, fidelity key, max_drop): the project's budget unless the user overrides."""
    metric = options.accuracy_metric
    classifier = model.task == "classification"
    if metric is None:  # what judges the target (metrics.budget_misses)
        metric = ("accuracy" if calib.labels is not None else "top1") if classifier else "cosine"
    if metric not in AC_METRICS:
        raise UsageError(f"unknown accuracy metric '{metric}': use one of {', '.join(AC_METRICS)}")
    if metric == "accuracy" and (not classifier or calib.labels is None):
        raise CalibrationDataError("accuracy control on accuracy needs a classifier and labelled "
                                   "calibration data; use the cosine metric instead")
    if metric == "top1" and not classifier:
        raise UsageError("accuracy control on top-1 agreement needs a classifier's logits "
                         "(--output-kind logits); use the cosine metric instead")
    budget = budget or Budget()  # the export passes its Budget
    max_drop = options.max_drop
    if max_drop is None:
        max_drop = {"accuracy": budget.max_accuracy_drop,
                    "top1": 1.0 - budget.min_top1_agreement}.get(metric, 1.0 - budget.min_cosine)
    if not 0.0 <= float(max_drop) < 1.0:
        raise UsageError(f"max_drop must be in [0, 1), got {max_drop}")
    key = {"accuracy": "accuracy", "top1": "top1_agreement"}.get(metric, "cosine_mean")
    return metric, key, float(max_drop)


def quantized_layers(ov_model) -> set[str]:
    """The ops whose input is quantized: reached from a FakeQuantize, looking through ops that
    only move or select values (NNCF puts the quantizer before a MaxPool or a Reshape)."""
    names = set()
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        todo = [t.get_node() for o in op.outputs() for t in o.get_target_inputs()]
        while todo:
            node = todo.pop()
            if node.get_type_name() in _PASS_THROUGH:
                todo.extend(t.get_node() for o in node.outputs() for t in o.get_target_inputs())
            elif node.get_type_name() != "FakeQuantize":
                names.add(f"{node.get_friendly_name()} ({node.get_type_name()})")
    return names


# -- plumbing ------------------------------------------------------------------------------------
def _compile(ov_model):
    import openvino as ov

    # f32: the comparison must measure quantization, not the CPU's default bf16
    return ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def _run_compiled(compiled, samples) -> dict[str, np.ndarray]:
    request = compiled.create_infer_request()
    outputs = compiled.outputs
    chunks: dict[str, list[np.ndarray]] = {}
    for sample in samples:
        result = request.infer(sample)
        for port in outputs:
            chunks.setdefault(port.get_any_name(), []).append(result[port])
    return {k: np.concatenate(v) for k, v in chunks.items()}


def _outputs(ov_model, samples) -> dict[str, np.ndarray]:
    return _run_compiled(_compile(ov_model), samples)


class _Counter:
    """The NNCF transform over CalibrationSet samples; counts the distinct samples NNCF used."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def __call__(self, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.seen.add(id(sample))
        return sample
