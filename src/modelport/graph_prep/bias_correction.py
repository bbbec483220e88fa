"""Empirical bias correction (Nagel et al. 2019, section 4.2): the weight rounding error's mean.

Per-channel symmetric int8 weights W_q = s * clip(round(W / s), -q, q) (s = max|W_c| / q; q is
127, or 64 for ONNX Runtime's 7-bit ``reduce_range`` weights) shift each output channel's mean
by E[(W_q - W) x]. On a depthwise layer (nine weights per channel) that shift does not average
out; it adds up layer after layer and moves the logits. Measured on the float graph over the
calibration data, for every Conv and Gemm at once: each one gets a parallel node computing
(W_q - W) x on its own float input, reduced to a per-channel mean inside the graph; the mean is
subtracted from the layer's bias, so E[W_q x + b'] = E[W x + b] on the calibration data.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from modelport.graph_prep import run
from modelport.graph_prep.graph import GraphView, attr, conv_weight, ensure_bias


def fake_quant(weight: np.ndarray, axis: int, qmax: int) -> np.ndarray:
    """Per-channel symmetric quantize-dequantize along ``axis`` (the backends' int8 weights)."""
    w = np.moveaxis(weight.astype(np.float64), axis, 0)
    scale = np.abs(w).reshape(w.shape[0], -1).max(axis=1) / qmax
    scale = np.where(scale > 0, scale, 1.0).reshape(-1, *[1] * (w.ndim - 1))
    q = np.clip(np.rint(w / scale), -qmax, qmax) * scale
    return np.moveaxis(q, 0, axis)


def layers(view: GraphView) -> list[tuple[Any, int]]:
    """(node, output-channel axis of its weight) for every Conv/Gemm with a private float
    weight."""
    found = []
    for node in view.graph.node:
        if node.op_type == "Conv" and conv_weight(view, node) is not None:
            found.append((node, 0))
        elif node.op_type == "Gemm" and not attr(node, "transA", 0) and \
                view.private_weight(node.input[1]):
            weight = view.value(node.input[1])
            if weight is not None and weight.ndim == 2 and weight.dtype.kind == "f":
                found.append((node, 0 if attr(node, "transB", 0) else 1))
    return found


def correct_biases(model: Any, samples: list[dict[str, np.ndarray]], *,
                   qmax: int = 127, shifts: dict[str, np.ndarray] | None = None
                   ) -> dict[str, Any]:
    """Subtract each layer's measured weight-rounding mean from its bias, in place.

    ``shifts``: filled with node name -> what was subtracted from its bias, so a backend that
    keeps a layer in float (the float fallback) can give it its own bias back (``undo``)."""
    view = GraphView(model)
    targets = layers(view)
    if not targets:
        return {"layers_corrected": 0}
    from onnx import helper, numpy_helper

    nodes, inits, names = [], [], []
    for k, (node, axis) in enumerate(targets):
        weight = view.value(node.input[1])
        delta = (fake_quant(weight, axis, qmax) - weight).astype(np.float32)
        dname, out, name = f"__mp_bc_dw_{k}", f"__mp_bc_y_{k}", f"__mp_bc_mean_{k}"
        inits.append(numpy_helper.from_array(delta, dname))
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        nodes.append(helper.make_node(node.op_type, [node.input[0], dname], [out],
                                      name=f"{out}__node", **attrs))
        axes = [0] if node.op_type == "Gemm" else [0, *range(2, weight.ndim)]
        nodes += run.reduce_node("ReduceMean", out, name, axes, view.opset())
        names.append(name)
    parts = run.run(run.with_outputs(model, nodes, names, inits), samples, names)
    largest = []
    for (node, axis), name in zip(targets, names, strict=True):
        shift = run.mean_over_batches(parts, name)
        weight = view.value(node.input[1])
        channels = weight.shape[axis]
        beta = float(attr(node, "beta", 1.0)) if node.op_type == "Gemm" else 1.0
        if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
            current = view.value(node.input[2])
            if current is None or current.size != channels or beta == 0.0:
                continue  # a bias that is not per output channel: leave this layer alone
        bias = ensure_bias(view, node, channels, weight.dtype)
        current = view.value(bias)
        delta = (shift / beta).reshape(current.shape)
        view.set_value(bias, current.astype(np.float64) - delta)
        largest.append(float(np.abs(shift).max()))
        if shifts is not None and node.name:
            shifts[node.name] = delta.astype(np.float32)
    return {"layers_corrected": len(largest), "weight_levels": 2 * qmax + 1,
            "largest_shift": round(max(largest, default=0.0), 6)}


def undo(model: Any, shifts: dict[str, np.ndarray], nodes: set[str] | frozenset[str]) -> int:
    """Give the layers named in ``nodes`` their uncorrected bias back, in place: a layer kept in
    float has no weight rounding to correct, and its corrected bias would be an error of its
    own. The shift is added to whatever bias the node reads now (pre-processing may have fused
    a following Add into it; the shift is additive either way). Returns the layers restored."""
    view = GraphView(model)
    done = 0
    for node in model.graph.node:
        delta = shifts.get(node.name) if node.name in nodes else None
        if delta is None or len(node.input) < 3 or not view.private_weight(node.input[2]):
            continue
        bias = view.value(node.input[2])
        if bias is None or bias.size != delta.size:
            continue
        view.set_value(node.input[2], bias.astype(np.float64) + delta.reshape(bias.shape))
        done += 1
    return done


def quantized_weights(model: Any, *, qmax: int = 127) -> Any:
    """A copy of ``model`` with every Conv/Gemm weight fake-quantized (activations float):
    the weight half of what a backend's INT8 build does, to measure bias correction by."""
    out = copy.deepcopy(model)
    view = GraphView(out)
    for node, axis in layers(view):
        view.set_value(node.input[1], fake_quant(view.value(node.input[1]), axis, qmax))
    return out


def mean_output_error(reference: np.ndarray, model: Any, samples: list[dict[str, np.ndarray]],
                      *, qmax: int = 127) -> float:
    """RMS over output channels of the mean (over samples) error of ``model`` with its weights
    quantized vs ``reference`` (the float graph's first output on ``samples``): the systematic
    part of the error, which bias correction removes."""
    got = run.outputs(quantized_weights(model, qmax=qmax), samples)[0].astype(np.float64)
    ref = reference.astype(np.float64)
    channels = ref.shape[1] if ref.ndim > 1 else 1
    err = (got - ref).reshape(ref.shape[0], channels, -1).mean(axis=(0, 2))
    return float(np.sqrt(np.mean(err ** 2)))
