"""Graph-level pieces of the TensorRT Q/DQ ONNX: the residual rule, structure checks, ORT runs.

Split from ``trt_qdq.py`` (which calibrates, quantizes and falls layers back); everything here
reads or edits an ONNX graph and runs it in ONNX Runtime on CPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import BuildError

WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(path: Path, data) -> dict[str, np.ndarray]:
    sess = session(path)
    names = [o.name for o in sess.get_outputs()]
    chunks: dict[str, list[np.ndarray]] = {}
    for feeds in data.batches(16):
        for name, value in zip(names, sess.run(names, feeds), strict=True):
            chunks.setdefault(name, []).append(value)
    from modelport.metrics import concat_batches  # zero-shot logits: [images, texts] a batch

    return {k: concat_batches(v) for k, v in chunks.items()}


# -- residual Add next to a Conv: Q/DQ on the skip input --------------------------------------
def add_residual_qdq(qdq: Path, pre: Path, data) -> list[str]:
    """Give a Conv-fed residual Add a symmetric int8 Q/DQ on its skip input (in place).

    TensorRT fuses ``Conv -> Add(skip)`` into one INT8 kernel when the skip input is
    quantized; the Conv side stays unquantized (a Q/DQ there splits the fusion).
    Returns the skip tensors given a Q/DQ.
    """
    import onnx
    from onnx import helper, numpy_helper
    from onnx.external_data_helper import load_external_data_for_model

    from modelport.backends.onnx_qdq import is_large

    large = is_large(qdq)  # then the weights stay external data when it is written back
    # the graph alone finds the sites; the weights are read only when it is written back (a
    # transformer has no Conv: a 2 GB model is then never loaded here)
    model = onnx.load(str(qdq), load_external_data=False)
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name for i in model.graph.initializer}
    sites: list[tuple[Any, int]] = []
    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        kinds = [getattr(producers.get(i), "op_type", None) for i in node.input]
        if kinds.count("Conv") != 1 or any(i in inits for i in node.input):
            continue
        skip = 1 - kinds.index("Conv")
        if kinds[skip] == "DequantizeLinear":
            continue
        sites.append((node, skip))
    if not sites:
        return []
    load_external_data_for_model(model, str(qdq.parent))
    absmax = _absmax(pre, [n.input[s] for n, s in sites], data)
    done = []
    for node, skip in sites:
        tensor = node.input[skip]
        scale = max(absmax[tensor], 1e-8) / 127.0
        base = f"{tensor}_residual"
        model.graph.initializer.extend([
            numpy_helper.from_array(np.array(scale, dtype=np.float32), f"{base}_scale"),
            numpy_helper.from_array(np.array(0, dtype=np.int8), f"{base}_zp"),
        ])
        model.graph.node.extend([
            helper.make_node("QuantizeLinear", [tensor, f"{base}_scale", f"{base}_zp"],
                             [f"{base}_q"], name=f"{base}_Q"),
            helper.make_node("DequantizeLinear", [f"{base}_q", f"{base}_scale", f"{base}_zp"],
                             [f"{base}_dq"], name=f"{base}_DQ"),
        ])
        node.input[skip] = f"{base}_dq"
        done.append(tensor)
    _toposort(model.graph)
    onnx.save(model, str(qdq), save_as_external_data=large,
              location=qdq.name + ".data" if large else None)
    return done


def run_exposing(model, tensors, data) -> dict[str, np.ndarray]:
    """Run ``model`` (an onnx.ModelProto; changed in place) on ``data`` with the intermediate
    ``tensors`` added as graph outputs, so their values can be read."""
    import onnx

    known = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in known:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    with tempfile.TemporaryDirectory(prefix="modelport-exposed-") as tmp:
        path = Path(tmp) / "exposed.onnx"
        onnx.save(model, str(path), save_as_external_data=True, location="exposed.onnx.data")
        return run_onnx(path, data)


def _absmax(pre: Path, tensors: list[str], data) -> dict[str, float]:
    import onnx

    values = run_exposing(onnx.load(str(pre)), tensors, data)
    return {t: float(np.abs(values[t]).max()) for t in tensors}


def _toposort(graph) -> None:
    """Reorder nodes so every input is produced before it is read (appended Q/DQ nodes)."""
    available = {i.name for i in graph.initializer} | {i.name for i in graph.input} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise BuildError(f"Q/DQ graph has a cycle or a dangling input at '{rest[0].name}'")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


# -- structure checks (used at build time and by the tests) ---------------------------------
def check_trt_qdq(path: Path) -> list[str]:
    """Problems that would stop TensorRT from running this graph as explicit INT8 (empty = ok)."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    problems = []
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(node.input) < 3 or node.input[2] not in inits:
            problems.append(f"{node.name}: no explicit zero point")
            continue
        zp = inits[node.input[2]]
        if zp.data_type != TensorProto.INT8:
            problems.append(f"{node.name}: zero point is {TensorProto.DataType.Name(zp.data_type)}"
                            ", TensorRT needs INT8")
        elif np.any(numpy_helper.to_array(zp) != 0):
            problems.append(f"{node.name}: non-zero zero point (asymmetric)")
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        dq = producers.get(node.input[1]) if len(node.input) > 1 else None
        if dq is None or dq.op_type != "DequantizeLinear":
            continue  # a float (fallen-back) layer
        if dq.input[0] in inits:  # a quantized weight must be per-channel
            scale = numpy_helper.to_array(inits[dq.input[1]])
            if scale.size <= 1 and _channels(inits[dq.input[0]]) > 1:
                problems.append(f"{node.name}: weight is quantized per-tensor, not per-channel")
        act = producers.get(node.input[0])
        if act is None or act.op_type != "DequantizeLinear":
            problems.append(f"{node.name}: weight quantized but activation input is float")
    return problems


def _channels(init) -> int:
    dims = list(init.dims)
    return max(dims) if dims else 1


def qdq_counts(path: Path) -> dict[str, int]:
    """How many weighted layers read a DQ'd weight (quantized) and how many stay float."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producers = {o: n for n in graph.node for o in n.output}
    weighted = [n for n in graph.node if n.op_type in WEIGHTED_OPS]
    quantized = sum(
        1 for n in weighted
        if all(getattr(producers.get(i), "op_type", None) == "DequantizeLinear" for i in n.input[:2])
    )
    return {"weighted": len(weighted), "weighted_quantized": quantized,
            "weighted_float": len(weighted) - quantized,
            "quantize_nodes": sum(n.op_type == "QuantizeLinear" for n in graph.node),
            "dequantize_nodes": sum(n.op_type == "DequantizeLinear" for n in graph.node)}
