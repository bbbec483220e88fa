"""Make the validated ONNX something onnx2tf converts: static shapes, folded, no ReduceL1/L2.

Measured on the dynamo-exported MiniLM (onnx2tf 1.28.8, numpy 2): with dynamic axes onnx2tf
fails on a ``Where`` of unknown rank; with static axes folded by onnxslim it gets through the
encoder, then fails on ``ReduceL2`` (it hands ``tf.norm`` a numpy integer axis). ReduceL2 is
rewritten as Sqrt(ReduceSumSquare) and ReduceL1 as ReduceSum(Abs), same attributes and axes.
onnx2tf's own simplifier (onnxsim) is not installed; onnxslim does that job here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from modelport.errors import MissingDependency
from modelport.specs import TensorSpec

log = logging.getLogger("modelport")


def prepare_for_onnx2tf(src: Path, specs: list[TensorSpec], tmp: Path) -> Path:
    """Write ``tmp/static.onnx`` (a copy: onnx2tf rewrites its input file in place)."""
    try:
        import onnx
        import onnxslim
    except ImportError:
        raise MissingDependency('TFLite conversion needs onnx and onnxslim: '
                                'pip install "modelport[tflite]"') from None
    shapes = [f"{s.name}:{','.join(map(str, s.shape))}" for s in specs]
    model = onnxslim.slim(str(src), input_shapes=shapes)
    rewritten = _rewrite_reduce_norms(model)
    if rewritten:
        log.info("rewrote %d ReduceL1/ReduceL2 node(s) for onnx2tf", rewritten)
    dst = tmp / "static.onnx"
    onnx.save(model, str(dst))
    return dst


def _rewrite_reduce_norms(model) -> int:
    from onnx import helper

    nodes = []
    count = 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        # before opset 18 ReduceL1 takes axes as an attribute but ReduceSum (13+) as an input
        legacy_l1 = node.op_type == "ReduceL1" and "axes" in attrs
        if node.op_type not in ("ReduceL1", "ReduceL2") or legacy_l1:
            nodes.append(node)
            continue
        count += 1
        tmp = f"{node.output[0]}__mp_{node.op_type.lower()}"
        if node.op_type == "ReduceL2":
            nodes.append(helper.make_node("ReduceSumSquare", list(node.input), [tmp],
                                          name=f"{node.name}__sumsq", **attrs))
            nodes.append(helper.make_node("Sqrt", [tmp], [node.output[0]],
                                          name=f"{node.name}__sqrt"))
        else:
            nodes.append(helper.make_node("Abs", [node.input[0]], [tmp], name=f"{node.name}__abs"))
            nodes.append(helper.make_node("ReduceSum", [tmp, *node.input[1:]], [node.output[0]],
                                          name=f"{node.name}__sum", **attrs))
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return count
