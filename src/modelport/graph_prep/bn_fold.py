"""Fold inference BatchNormalization into the Conv before it.

The dynamo exporter's optimizer already folds ``Conv -> BatchNorm`` of an eval-mode module
(measured: torch 2.13, a MobileNet-style block exports with no BatchNormalization node), and
ONNX Runtime's quantization pre-processing folds it again for ORT and TensorRT. What remains
are graphs from elsewhere (a given ``.onnx``, the TorchScript fallback exporter), for the
backends that convert the ONNX themselves (OpenVINO, TFLite) and for equalization, which
needs the folded weights: y = gamma * (W x + b - mean) / sqrt(var + eps) + beta.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.graph_prep.graph import GraphView, attr, conv_weight, ensure_bias


def fold_batchnorms(model: Any) -> dict[str, Any]:
    """Fold every BatchNormalization whose input is a private Conv output; returns what was
    folded."""
    view = GraphView(model)
    folded: list[str] = []
    for bn in [n for n in model.graph.node if n.op_type == "BatchNormalization"]:
        if len(bn.output) > 1 and any(bn.output[1:]):
            continue  # training-mode outputs: not an inference BatchNorm
        conv = view.producer.get(bn.input[0])
        if conv is None or view.only_consumer(bn.input[0]) is not bn:
            continue
        weight = conv_weight(view, conv)
        params = [view.value(name) for name in bn.input[1:5]]
        if weight is None or any(p is None for p in params):
            continue
        gamma, beta, mean, var = (p.astype(np.float64) for p in params)
        factor = gamma / np.sqrt(var + float(attr(bn, "epsilon", 1e-5)))
        bias_name = ensure_bias(view, conv, weight.shape[0], weight.dtype)
        bias = view.value(bias_name).astype(np.float64)
        view.set_value(conv.input[1], weight * factor.reshape(-1, *[1] * (weight.ndim - 1)))
        view.set_value(bias_name, (bias - mean) * factor + beta)
        conv.output[0] = bn.output[0]  # the Conv now writes what the BatchNorm wrote
        model.graph.node.remove(bn)
        view.refresh()
        folded.append(bn.name or bn.output[0])
    return {"batchnorms_folded": len(folded), "folded": folded}
