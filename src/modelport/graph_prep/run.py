"""Run a float ONNX graph in ONNX Runtime on calibration samples, for the recipe's statistics.

Statistics are reduced inside the graph (per-channel ReduceMean / ReduceMax nodes added as
extra outputs), so a pass over hundreds of images keeps a few floats per layer, never every
intermediate activation.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

#: rows per ORT run when the graph's batch axis is dynamic
BATCH = 16


def batch_size(model: Any) -> int:
    """BATCH when every graph input has a symbolic (or unknown) first axis, else 1."""
    inits = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in inits:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            return 1
    return BATCH


def feeds_of(samples: Sequence[dict[str, np.ndarray]], rows: int):
    for start in range(0, len(samples), rows):
        chunk = samples[start:start + rows]
        yield {k: np.concatenate([s[k] for s in chunk], axis=0) for k in chunk[0]}


def with_outputs(model: Any, nodes: Sequence[Any], outputs: Sequence[str],
                 initializers: Sequence[Any] = ()) -> Any:
    """A copy of ``model`` with ``nodes`` appended and ``outputs`` (float tensors) exposed."""
    from onnx import TensorProto, helper

    out = copy.deepcopy(model)
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(initializers)
    known = {o.name for o in out.graph.output}
    out.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
                            for name in outputs if name not in known)
    return out


def session(model: Any):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    # the graph as written: statistics of these very tensors, no fused rewrites
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def run(model: Any, samples: Sequence[dict[str, np.ndarray]],
        names: Sequence[str]) -> list[tuple[int, dict[str, np.ndarray]]]:
    """(rows, {name: value}) per batch of ``samples`` for the requested output names."""
    sess = session(model)
    wanted = list(names)
    results = []
    for feed in feeds_of(samples, batch_size(model)):
        rows = next(iter(feed.values())).shape[0]
        values = sess.run(wanted, feed)
        results.append((rows, dict(zip(wanted, values, strict=True))))
    return results


def outputs(model: Any, samples: Sequence[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """The graph's own outputs on ``samples``, concatenated over batches."""
    names = [o.name for o in model.graph.output]
    parts = run(model, samples, names)
    return [np.concatenate([p[name] for _, p in parts], axis=0) for name in names]


def mean_over_batches(parts: list[tuple[int, dict[str, np.ndarray]]], name: str) -> np.ndarray:
    """Row-weighted mean of per-batch means (each batch reduced its rows already)."""
    total = sum(rows for rows, _ in parts)
    return sum(rows * values[name].astype(np.float64) for rows, values in parts) / total


def reduce_node(op: str, src: str, dst: str, axes: Sequence[int], opset: int) -> list[Any]:
    """A ReduceMean/ReduceMax over ``axes`` (keepdims 0), in the graph's opset form: axes as
    an input from opset 18 on, as an attribute before."""
    from onnx import helper

    if opset >= 18:
        axes_name = f"{dst}__axes"
        const = helper.make_node("Constant", [], [axes_name], name=f"{dst}__axes_node",
                                 value=helper.make_tensor(axes_name, 7, [len(axes)], list(axes)))
        return [const, helper.make_node(op, [src, axes_name], [dst], name=f"{dst}__node",
                                        keepdims=0)]
    return [helper.make_node(op, [src], [dst], name=f"{dst}__node", axes=list(axes), keepdims=0)]
