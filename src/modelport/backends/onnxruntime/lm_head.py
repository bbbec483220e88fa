"""The LM head on the last position only, when the generation loop asks for it.

A causal LM graph computes ``logits`` [batch, n, vocab] for every position of its input, but
generation reads only the last one: at prefill the head (hidden x vocab, the largest matrix
of a small model) was 21% of a 256-token prompt's time on a 125 M Llama (docs/
language-models.md). Scoring (perplexity, the verification samples) needs every position. So
the graph gets one optional input, ``logits_to_keep`` (transformers' name; int64 [1], default
0 = every position): an initializer listed as a graph input, which ONNX Runtime lets a caller
override and otherwise uses as is. A ``Slice`` of the head's input to its last
``logits_to_keep`` positions is inserted in front of the head: feeds without it give the
graph's old outputs, ``LMSession.generate`` feeds 1.

The head is the MatMul (or MatMulNBits) whose result reaches ``logits`` through position-wise
nodes only (a bias Add, a soft-cap): anything else is left alone and reported.
"""

from __future__ import annotations

from typing import Any

#: the optional input's name (transformers' ``logits_to_keep``: 0 = all positions)
KEEP = "logits_to_keep"
HEADS = ("MatMul", "MatMulNBits")
#: nodes between the head and ``logits`` that act on each position alone
POSITIONWISE = ("Add", "Mul", "Div", "Tanh", "Cast", "Identity")


def keep_last_logits(proto: Any) -> dict[str, Any]:
    """Insert ``Slice(head input, -logits_to_keep, end, axis 1)`` before the head of
    ``proto`` (in place); return the manifest's fact ``{"logits_to_keep": bool, ...}``."""
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    if not any(o.name == "logits" for o in graph.output):
        return {"logits_to_keep": False, "reason": "no 'logits' output"}
    if any(i.name == KEEP for i in graph.input):
        return {"logits_to_keep": True, "head": "already sliced"}
    producer = {out: node for node in graph.node for out in node.output}
    constants = {t.name for t in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output}
    node = producer.get("logits")
    while node is not None and node.op_type in POSITIONWISE:
        flowing = [i for i in node.input if i and i not in constants]
        if len(flowing) != 1:
            return {"logits_to_keep": False, "reason": f"{node.op_type} before logits"}
        node = producer.get(flowing[0])
    if node is None or node.op_type not in HEADS or node.input[1] not in constants:
        return {"logits_to_keep": False, "reason": "no constant-weight MatMul head"}
    import numpy as np

    hidden = node.input[0]
    sliced = f"{hidden}_last"
    names = {"start": f"{KEEP}_start", "end": f"{KEEP}_end", "axis": f"{KEEP}_axis"}
    graph.initializer.extend([
        numpy_helper.from_array(np.zeros(1, np.int64), KEEP),
        numpy_helper.from_array(np.array([np.iinfo(np.int64).max]), names["end"]),
        numpy_helper.from_array(np.ones(1, np.int64), names["axis"])])
    graph.input.append(helper.make_tensor_value_info(KEEP, TensorProto.INT64, [1]))
    at = list(graph.node).index(node)
    graph.node.insert(at, helper.make_node("Neg", [KEEP], [names["start"]], f"{KEEP}_neg"))
    graph.node.insert(at + 1, helper.make_node(
        "Slice", [hidden, names["start"], names["end"], names["axis"]], [sliced],
        f"{KEEP}_slice"))
    node.input[0] = sliced
    return {"logits_to_keep": True, "head": node.name or node.op_type}
