"""Projections that read one input -> one MatMul: q, k and v (GroupQueryAttention's
packed-QKV input) and the MLP's gate and up (a Split after it; ORT only).

Once the rotary embedding runs inside GroupQueryAttention (lm_rotary.py), q, k and v go in as
their projections' outputs, which all read the same normed hidden state: their weights
concatenated along the output axis make one MatMul (and one bias Add where the model has
biases, Qwen2) whose output is the ``[b, s, (heads + 2 * kv_heads) * head_dim]`` packed form
the op takes as its ``query`` with ``key`` and ``value`` left empty, as onnxruntime-genai's
model builder writes it. Two fewer MatMuls per layer (MatMulNBits once weight_only.py packs
the graph: its blocks run along the input axis, so each output column quantizes as before).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.backends.onnxruntime.onnx_match import GraphIndex, NoMatch, prune


def pack_qkv(index: GraphIndex, q: str, k: str, v: str, layer: int
             ) -> tuple[list[Any], list[Any], str]:
    """(new nodes, new initializers, packed output name) for one layer, or NoMatch; the
    three old projections are left for onnx_match.prune once nothing reads them."""
    from onnx import helper, numpy_helper

    parts = [_projection(index, name, layer) for name in (q, k, v)]
    sources = {x for x, _, _ in parts}
    if len(sources) != 1:
        raise NoMatch(f"layer {layer}: q, k and v read different inputs")
    biases = [b for _, _, b in parts]
    if any(b is None for b in biases) and not all(b is None for b in biases):
        raise NoMatch(f"layer {layer}: some projections have a bias, some not")
    weight = np.concatenate([w for _, w, _ in parts], axis=1)
    prefix = f"mp_qkv_{layer}"
    inits = [numpy_helper.from_array(weight.astype(np.float32), prefix + "_weight")]
    out = prefix + ("_matmul" if biases[0] is not None else "")
    nodes = [helper.make_node("MatMul", [sources.pop(), prefix + "_weight"], [out],
                              f"{prefix}_MatMul")]
    if biases[0] is not None:
        inits.append(numpy_helper.from_array(
            np.concatenate(biases).astype(np.float32), prefix + "_bias"))
        nodes.append(helper.make_node("Add", [out, prefix + "_bias"], [prefix],
                                      f"{prefix}_Add"))
        out = prefix
    return nodes, inits, out


def _projection(index: GraphIndex, name: str, layer: int
                ) -> tuple[str, np.ndarray, np.ndarray | None]:
    """(input, weight [in, out], bias or None) of ``MatMul(x, W) [+ b]`` with constant W, b."""
    node = index.prod.get(name)
    bias = None
    if node is not None and node.op_type == "Add":
        side = 1 if index.weight(node.input[1]) is not None else 0
        bias = index.weight(node.input[side])
        if bias is None or bias.ndim != 1:
            raise NoMatch(f"layer {layer}: {name} adds no constant bias vector")
        node = index.prod.get(node.input[1 - side])
    if node is None or node.op_type != "MatMul":
        raise NoMatch(f"layer {layer}: {name} is not a MatMul projection")
    weight = index.weight(node.input[1])
    if weight is None or weight.ndim != 2 or weight.dtype != np.float32:
        raise NoMatch(f"layer {layer}: {name} has no constant fp32 weight")
    if bias is not None and bias.shape[0] != weight.shape[1]:
        raise NoMatch(f"layer {layer}: {name}'s bias is not one per output")
    return node.input[0], weight, bias


def pack_siblings(proto: Any) -> int:
    """Two MatMuls of one input with constant fp32 weights of one K (the MLP's gate and up
    projections) -> one MatMul over the concatenated weights and a Split back into the two
    outputs: the same numbers (each output column is its own dot product, and weight_only's
    blocks run along K), one weight-only kernel call instead of two per layer. Returns how many
    pairs were packed."""
    from onnx import helper, numpy_helper

    from modelport.backends.onnxruntime.onnx_match import topological

    graph = proto.graph
    index = GraphIndex(graph)
    pairs = []
    for name, readers in index.cons.items():
        mats = [n for n in readers if n.op_type == "MatMul" and n.input[0] == name]
        weights = [index.weight(n.input[1]) for n in mats]
        if len(mats) == 2 and all(w is not None and w.ndim == 2 and w.dtype == np.float32
                                  for w in weights) and weights[0].shape[0] == weights[1].shape[0]:
            pairs.append((name, mats, weights))
    if not pairs:
        return 0
    new, inits, gone = [], [], set()
    for n, (name, mats, weights) in enumerate(pairs):
        prefix = f"mp_pair_{n}"
        inits += [numpy_helper.from_array(np.concatenate(weights, axis=1), prefix + "_weight"),
                  numpy_helper.from_array(np.array([w.shape[1] for w in weights], np.int64),
                                          prefix + "_split")]
        new += [helper.make_node("MatMul", [name, prefix + "_weight"], [prefix],
                                 f"{prefix}_MatMul"),
                helper.make_node("Split", [prefix, prefix + "_split"],
                                 [m.output[0] for m in mats], f"{prefix}_Split", axis=-1)]
        gone |= {id(m) for m in mats}
    nodes = [n for n in graph.node if id(n) not in gone] + new
    ordered = topological(nodes, index.inputs | set(index.inits) | {t.name for t in inits})
    graph.initializer.extend(inits)
    del graph.node[:]
    graph.node.extend(ordered)
    prune(graph)
    return len(pairs)
