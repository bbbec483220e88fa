"""A TensorRT-ready Q/DQ ONNX from the shared CalibrationSet (explicit quantization).

TensorRT 10 deprecated and 11 removed the implicit INT8 calibrators: INT8 for TensorRT is an
ONNX graph with QuantizeLinear/DequantizeLinear pairs, built as a strongly typed network.
This module makes that graph with ``onnxruntime.quantization`` in the form TensorRT fuses:

- int8 activations *and* weights, symmetric (every zero point is 0: TensorRT's scheme);
- weights per-channel (Conv axis 0, MatMul axis 1, Gemm by transB), stored as int8 + DQ;
- Q/DQ only at the inputs of weighted ops (Conv/ConvTranspose/MatMul/Gemm); their outputs
  and biases stay float (TensorRT's placement advice: "quantize all inputs of weighted
  operations, not their outputs"; the bias is folded into the INT8 kernel);
- a residual Add fed by a Conv has a Q/DQ on its *other* (skip) input and none on the Conv
  side, so TensorRT can fuse the Add into the Conv (its ResNet-style recommendation). An
  identity skip already shares the Q/DQ of the Conv input it also feeds; any other skip gets
  one of its own (``add_residual_qdq``);
- sensitive layers fall back to float when the graph misses the accuracy budget on held-in
  calibration samples: ranked by the quantization SNR of their input, the fewest that meet
  the budget found by the search every backend shares (backends/fallback.py).

The same file runs in ONNX Runtime on CPU, which is how its fidelity is checked here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.backends import fallback, onnx_qdq
from modelport.backends.onnx_qdq import CalibrationReader, activation_matmuls, module_names
from modelport.backends.tensorrt.qdq_graph import (
    WEIGHTED_OPS,
    add_residual_qdq,
    check_trt_qdq,
    qdq_counts,
    run_exposing,
    run_onnx,
)
from modelport.errors import BuildError, CalibrationDataError

log = logging.getLogger("modelport")

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: samples of the calibration set used to rank layers and check the budget while building
PROBE_SAMPLES = 64


@dataclass(frozen=True)
class QdqRecipe:
    """How the Q/DQ graph is made; recorded in the bundle manifest."""

    method: str = "percentile"
    op_types: tuple[str, ...] = WEIGHTED_OPS
    percentile: float = 99.999
    exclude: tuple[str, ...] = ()
    residual_qdq: bool = True
    #: quantize activation x activation MatMuls (attention's Q.K^T and P.V) too
    quantize_attention: bool = True
    max_fallback: int = fallback.DEFAULT_MAX_FALLBACK  # most layers kept float for the budget
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["op_types"] = list(self.op_types)
        out["exclude"] = list(self.exclude)
        return out


def default_recipe(onnx_path: Path, options=None) -> QdqRecipe:
    """Measured defaults (``bench/trt_qdq_sweep.py``; README "TensorRT (NVIDIA GPUs)").

    Held-out cosine on all-MiniLM-L6-v2, every weighted op int8 (48 layers): MinMax 0.9749,
    Percentile 99.999 0.9759, Entropy (2048->128 bins) 0.9205; with the sensitivity fallback
    (8 FFN layers back to float, 40 int8): MinMax 0.9918, Percentile 0.9936. digits-cnn keeps
    top-1 with MinMax and Percentile (Entropy loses 0.3 points). So: Percentile + fallback.
    """
    method = getattr(options, "calib_method", None) or "percentile"
    if method not in CALIBRATION_METHODS:
        raise BuildError(f"unknown calibration method '{method}': use one of "
                         f"{', '.join(CALIBRATION_METHODS)}")
    ops = tuple(getattr(options, "op_types", None) or WEIGHTED_OPS)
    fallback = getattr(options, "max_fallback", None)
    return QdqRecipe(method=method, op_types=ops,
                     exclude=tuple(getattr(options, "nodes_to_exclude", None) or ()),
                     max_fallback=int(QdqRecipe.max_fallback if fallback is None else fallback))


# -- the one call ---------------------------------------------------------------------------
def make_qdq_onnx(src: Path, dst: Path, calib, recipe: QdqRecipe, *, task: str = "generic",
                  budget=None) -> dict[str, Any]:
    """Calibrate once, write the Q/DQ graph to ``dst``; fall layers back to float if needed.

    Returns manifest facts: recipe, layers quantized / fallen back, probe fidelity.
    """
    if calib is None or len(calib) == 0:
        raise CalibrationDataError("TensorRT INT8 needs calibration data: pass --calib")
    from modelport.metrics import Budget, budget_misses

    budget = fallback.with_headroom(budget or Budget())  # the probe is calibration data
    with tempfile.TemporaryDirectory(prefix="modelport-trt-qdq-") as tmp:
        tmpdir = Path(tmp)
        pre = tmpdir / "pre.onnx"
        onnx_qdq.preprocess(src, pre)  # by module: the fault tests patch it there
        cache = tmpdir / "ranges.json"
        probe = calib.take(PROBE_SAMPLES)
        reference = run_onnx(pre, probe)
        exclude = list(recipe.exclude)
        _quantize(pre, dst, calib, recipe, exclude, cache)
        metrics = _probe_fidelity(dst, probe, reference, task)
        misses = budget_misses(metrics, budget)
        ranking: list[dict[str, Any]] = []
        fallen: list[str] = []
        record = None
        if misses and recipe.max_fallback > 0:
            ranking = rank_sensitivity(pre, dst, probe)
            log.info("Q/DQ graph misses the budget on %d calibration samples (%s); "
                     "keeping the fewest least quantizable layers in float", len(probe),
                     "; ".join(misses))

            def evaluate(units) -> dict[str, Any]:
                _quantize(pre, dst, calib, recipe, exclude + [n for u in units for n in u.nodes],
                          cache)
                return _probe_fidelity(dst, probe, reference, task)

            units = [fallback.Unit(r["tensor"], tuple(r["nodes"]), -r["sqnr_db"],
                                   {"sqnr_db": r["sqnr_db"], "modules": r["modules"]})
                     for r in ranking]
            record = fallback.find_fewest(
                units, evaluate, budget, recipe.max_fallback, before=metrics,
                probe=f"first {len(probe)} calibration samples (never the evaluation split)",
                ranked_by="quantization noise of the layer's input (-SQNR dB)")
            fallen = [n for u in record["kept_float"] for n in u["nodes"]]
            metrics = _probe_fidelity(dst, probe, reference, task)
            misses = budget_misses(metrics, budget)
        if recipe.residual_qdq:
            residual = add_residual_qdq(dst, pre, calib.take(PROBE_SAMPLES * 2))
        else:
            residual = []
    problems = check_trt_qdq(dst)
    if problems:
        raise BuildError(f"the Q/DQ graph is not in TensorRT's form: {problems[0]}")
    counts = qdq_counts(dst)
    return {
        "precision": "int8", "format": "QDQ (explicit quantization, strongly typed)",
        "weights": "s8 per-channel symmetric", "activations": "s8 per-tensor symmetric (zp 0)",
        "calibration_method": recipe.method, "calibration_samples": len(calib),
        "qdq_recipe": recipe.to_dict(), "layers_quantized": counts["weighted_quantized"],
        "layers_float": counts["weighted_float"], "fallback_to_float": fallen,
        "residual_qdq": residual, "probe_fidelity": metrics,
        "probe_budget_misses": misses,
        "sensitivity": ranking[: max(len(fallen), 5)],
        **({"float_fallback": record} if record is not None else {}),
    }


# -- ONNX Runtime quantizer with TensorRT's settings ----------------------------------------
def _calibrate(pre: Path, calib, recipe: QdqRecipe, cache: Path) -> None:
    """Activation ranges, computed once and cached for every quantization that follows.

    The calibrator is driven directly because ``quantize_static`` cannot pass ``num_bins``:
    with its default 128 bins and 128 quantized bins the Entropy search has exactly one
    candidate, the full range, i.e. Entropy silently equals MinMax (measured: identical
    fidelity). TensorRT's own entropy calibration uses 2048 bins into 128; so do we.
    """
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        create_calibrator,
        save_tensors_data,
    )

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    options: dict[str, Any] = {"symmetric": True}  # zero point 0: TensorRT's only scheme
    if recipe.method == "entropy":
        options.update(num_bins=2048, num_quantized_bins=128)
    elif recipe.method == "percentile":
        options.update(num_bins=2048, percentile=recipe.percentile)
    log.info("calibrating the TensorRT Q/DQ graph on %d samples (%s) ...", len(calib),
             recipe.method)
    with tempfile.TemporaryDirectory(prefix="modelport-calib-") as tmp:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print() progress
                calibrator = create_calibrator(
                    Path(pre), list(recipe.op_types),
                    augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                    calibrate_method=methods[recipe.method], extra_options=options,
                    use_external_data_format=onnx_qdq.is_large(pre))
                calibrator.collect_data(CalibrationReader(calib, "calibrating INT8 (TensorRT Q/DQ)"))
                save_tensors_data(calibrator.compute_data(), cache)
        except ValueError as exc:
            if "inhomogeneous" in str(exc):
                raise CalibrationDataError(
                    f"{recipe.method} calibration needs every calibration sample padded to one "
                    "shape; pad text to one length (text files are padded for you)"
                ) from None
            raise


def _quantize(pre: Path, dst: Path, calib, recipe: QdqRecipe, exclude: list[str],
              cache: Path) -> None:
    """Write the Q/DQ graph with TensorRT's settings, from the cached activation ranges."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not cache.exists():
        _calibrate(pre, calib, recipe, cache)
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if not recipe.quantize_attention:
        exclude = exclude + [n for n in activation_matmuls(pre) if n not in exclude]
    extra: dict[str, Any] = {
        "ActivationSymmetric": True,  # zero point 0: TensorRT's only activation scheme
        "WeightSymmetric": True,
        # Q/DQ on inputs of weighted ops only; TensorRT fuses their outputs itself
        "OpTypesToExcludeOutputQuantization": list(WEIGHTED_OPS),
        "QuantizeBias": False,  # float bias: TensorRT folds it into the INT8 kernel
        "QDQKeepRemovableActivations": True,  # keep Relu/Clip explicit for TensorRT to fuse
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},  # [in, out] weights: out channels
        "DedicatedQDQPair": False,  # one pair per tensor: same scale either way, fewer nodes
        **recipe.extra,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(
            str(pre), str(dst), None,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=methods[recipe.method],
            op_types_to_quantize=list(recipe.op_types),
            nodes_to_exclude=exclude,
            extra_options=extra,
            calibration_cache_path=str(cache),
            use_external_data_format=onnx_qdq.is_large(pre),
        )


# -- fidelity on the probe and per-layer sensitivity ----------------------------------------
def _probe_fidelity(path: Path, probe, reference: dict[str, np.ndarray], task: str):
    from modelport.metrics import fidelity

    got = run_onnx(path, probe)
    return fidelity(got, reference, task=task, labels=probe.labels)


def rank_sensitivity(pre: Path, qdq: Path, probe) -> list[dict[str, Any]]:
    """Rank quantized activation tensors, worst first, by the SNR of their fake quantization.

    One float run with every quantized activation exposed; each tensor's noise is what its
    Q/DQ scale does to the values it really sees. The consumers of the worst tensors are
    the layers worth giving back to float.
    """
    import onnx

    qmodel = onnx.load(str(qdq), load_external_data=False)
    scales = _activation_scales(qmodel)
    consumers = _consumers_through_qdq(qmodel)
    if not scales:
        return []
    fmodel = onnx.load(str(pre))
    modules = module_names(pre)
    values = run_exposing(fmodel, list(scales), probe)
    ranking = []
    for name, scale in scales.items():
        x = values[name].astype(np.float64)
        fq = np.clip(np.round(x / scale), -128, 127) * scale
        noise = float(np.sum((x - fq) ** 2))
        signal = float(np.sum(x**2))
        sqnr_db = 10 * np.log10(signal / noise) if noise > 0 else float("inf")
        nodes = sorted(n for n in consumers.get(name, []) if n)
        if nodes:
            ranking.append({"tensor": name, "nodes": nodes,
                            "modules": sorted({modules[n] for n in nodes if n in modules}),
                            "sqnr_db": round(sqnr_db, 2),
                            "absmax": float(np.abs(x).max()), "scale": float(scale)})
    ranking.sort(key=lambda r: r["sqnr_db"])
    return ranking


def _activation_scales(model) -> dict[str, float]:
    """Float tensor -> scale of the QuantizeLinear that reads it (activations only)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            scale = numpy_helper.to_array(inits[node.input[1]])
            if scale.size == 1:
                out[node.input[0]] = float(scale.reshape(()))
    return out


def _consumers_through_qdq(model) -> dict[str, list[str]]:
    """Float tensor -> names of the weighted nodes that read its Q -> DQ output."""
    by_input: dict[str, list] = {}
    for node in model.graph.node:
        for i in node.input:
            by_input.setdefault(i, []).append(node)
    out: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        for dq in by_input.get(node.output[0], []):
            if dq.op_type != "DequantizeLinear":
                continue
            for user in by_input.get(dq.output[0], []):
                if user.op_type in WEIGHTED_OPS:
                    out.setdefault(node.input[0], []).append(user.name)
    return out

