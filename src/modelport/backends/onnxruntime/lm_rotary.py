"""The exported rotary embedding -> GroupQueryAttention's own (``do_rotary=1``, ORT only).

Per layer the dynamo export of transformers' ``apply_rotary_pos_emb`` writes, for q and for k,
``Reshape -> Transpose`` to heads, then ``x * cos + rotate_half(x) * sin`` (two Slices, Neg,
Concat, two Muls, Add; partial rotary adds a Slice and a Concat), and lm_attention.py had to
transpose and flatten both back for GroupQueryAttention: ~22 small nodes per layer that cost
per-call overhead on every one-token decode step. GroupQueryAttention rotates q and k itself
from ``cos_cache`` / ``sin_cache`` [positions, rotary dim / 2] at the ``position_ids`` it is
given, so the projections go in as they come out of their MatMuls.

The tables are the graph's own: the subgraph that makes the ``cos`` and ``sin`` the rope
multiplies by is evaluated with ONNX Runtime at positions 0 .. context - 1, so every rope
variant of transformers (default, linear, llama3, yarn's attention factor, partial rotary)
gives its own numbers. That holds only when those tensors are a function of each position
alone: the subgraph must read no graph input but ``position_ids``, a second evaluation at
scattered positions must give the same rows, and ``cos`` must be ``cat(freqs, freqs)`` (the
half-rotated form); anything else raises NoMatch and the rope stays as exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.backends.onnxruntime.onnx_match import GraphIndex, NoMatch

#: past this, Slice's ``end`` means "to the end of the axis"
_TO_END = 2 ** 30


@dataclass(frozen=True)
class Rope:
    """One layer's rotary embedding as matched."""

    q_proj: str  # [b, s, heads * head_dim]: the q projection's output, before any Reshape
    k_proj: str
    cos: str  # the tensors the rope multiplies by, broadcast over heads
    sin: str
    rot: int  # rotary dimension (< head_dim for partial rotary)


def match_rope(index: GraphIndex, q_rot: str, k_rot: str, head_dim: int, heads: int,
               kv_heads: int, layer: int) -> Rope:
    """The rope that made ``q_rot`` and ``k_rot`` ([b, heads, s, head_dim]) from the
    projections, or NoMatch."""
    q_proj, q_cos, q_sin, q_rot_dim = _rotated(index, q_rot, head_dim, heads,
                                               f"layer {layer} q: ")
    k_proj, k_cos, k_sin, k_rot_dim = _rotated(index, k_rot, head_dim, kv_heads,
                                               f"layer {layer} k: ")
    if (q_cos, q_sin, q_rot_dim) != (k_cos, k_sin, k_rot_dim):
        raise NoMatch(f"layer {layer}: q and k are rotated by different tables")
    if head_dim % 16 or q_rot_dim % 16:  # what ORT's CPU kernel takes (it refuses the rest)
        raise NoMatch(f"head size {head_dim}, rotary dimension {q_rot_dim}: not multiples of "
                      "16 (GroupQueryAttention's rotary kernel)")
    return Rope(q_proj, k_proj, q_cos, q_sin, q_rot_dim)


def _rotated(index: GraphIndex, out: str, head_dim: int, heads: int, where: str
             ) -> tuple[str, str, str, int]:
    """(projection, cos, sin, rotary dim) of one rotated tensor."""
    node = index.prod.get(out)
    if node is not None and node.op_type == "Concat" and len(node.input) == 2:
        if index.attr(node, "axis") not in (-1, 3):
            raise NoMatch(f"{where}{out} is a Concat off the last axis")
        rotated, passed = node.input  # partial rotary: cat(rope(x[..., :rot]), x[..., rot:])
        x_t, rot, end = _slice(index, passed, where)
        x, cos, sin, half = _half_rotated(index, rotated, where)
        source, start, stop = _slice(index, x, where)
        if source != x_t or start != 0 or stop != rot or end < head_dim or 2 * half != rot:
            raise NoMatch(f"{where}{out} is not a partial rotary of one tensor")
    else:
        x_t, cos, sin, half = _half_rotated(index, out, where)
        rot = 2 * half
        if rot != head_dim:
            raise NoMatch(f"{where}rotary over {rot} of {head_dim} without a pass-through")
    return _projection(index, x_t, head_dim, heads, where), cos, sin, rot


def _half_rotated(index: GraphIndex, out: str, where: str) -> tuple[str, str, str, int]:
    """``x * cos + cat(-x[..., half:], x[..., :half]) * sin`` -> (x, cos, sin, half)."""
    add = index.made_by(out, "Add", where)
    muls = [index.made_by(name, "Mul", where) for name in add.input]
    for plain, turned in (muls, muls[::-1]):
        for j in (0, 1):
            cat = index.prod.get(turned.input[j])
            if cat is None or cat.op_type != "Concat" or len(cat.input) != 2:
                continue
            if index.attr(cat, "axis") not in (-1, 3):
                raise NoMatch(f"{where}rotate_half concatenates off the last axis")
            sin = turned.input[1 - j]
            neg = index.made_by(cat.input[0], "Neg", where)
            x, half, end = _slice(index, neg.input[0], where)
            x_low, start, stop = _slice(index, cat.input[1], where)
            if x_low != x or start != 0 or stop != half or end < 2 * half:
                raise NoMatch(f"{where}rotate_half is not cat(-x[..., h:], x[..., :h])")
            if x not in plain.input:
                raise NoMatch(f"{where}x * cos and rotate_half(x) * sin read different x")
            cos = plain.input[1 - list(plain.input).index(x)]
            return x, cos, sin, half
    raise NoMatch(f"{where}{out} is not x * cos + rotate_half(x) * sin")


def _slice(index: GraphIndex, name: str, where: str) -> tuple[str, int, int]:
    """``Slice(x, start, end)`` on the last axis with step 1 -> (x, start, end)."""
    node = index.made_by(name, "Slice", where)
    values = [index.constant(x) if x else None for x in list(node.input[1:]) + [""] * 4][:4]
    starts, ends, axes, steps = values
    if (starts is None or ends is None or axes is None or starts.size != 1 or ends.size != 1
            or int(axes.reshape(-1)[0]) not in (-1, 3)
            or (steps is not None and int(steps.reshape(-1)[0]) != 1)
            or (len(node.input) > 4 and node.input[4] and steps is None)):
        raise NoMatch(f"{where}{name} is not a constant slice of the last axis")
    return node.input[0], int(starts.reshape(-1)[0]), min(int(ends.reshape(-1)[0]), _TO_END)


def _projection(index: GraphIndex, x_t: str, head_dim: int, heads: int, where: str) -> str:
    """``Transpose(Reshape(proj), [0, 2, 1, 3])`` with ``proj`` [b, s, heads * head_dim] made
    by a constant-weight MatMul (and bias Add) -> proj."""
    transpose = index.made_by(x_t, "Transpose", where)
    if list(index.attr(transpose, "perm") or []) != [0, 2, 1, 3]:
        raise NoMatch(f"{where}{x_t} is not a [0, 2, 1, 3] transpose")
    reshape = index.made_by(transpose.input[0], "Reshape", where)
    shape = reshape.input[1]
    tail = index.constant(shape)
    if tail is None:  # a dynamic shape: Concat(batch, seq, ..., [head_dim])
        concat = index.made_by(shape, "Concat", where)
        tail = index.constant(concat.input[-1])
    if tail is None or tail.size == 0 or int(tail.reshape(-1)[-1]) != head_dim:
        raise NoMatch(f"{where}the head reshape does not end in the head size {head_dim}")
    proj = reshape.input[0]
    node = index.prod.get(proj)
    if node is not None and node.op_type == "Add":
        node = index.prod.get(node.input[0])
    weight = index.weight(node.input[1]) if node is not None and node.op_type == "MatMul" \
        else None
    if weight is None or weight.ndim != 2 or weight.shape[1] != heads * head_dim:
        raise NoMatch(f"{where}no constant projection of width {heads} x {head_dim}")
    return proj


def rotary_tables(proto: Any, index: GraphIndex, rope: Rope, context: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``cos_cache``, ``sin_cache`` [context, rot / 2] from the graph's own cos / sin
    subgraph, or NoMatch (see the module docstring)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    needed, stack = set(), [rope.cos, rope.sin]
    while stack:
        name = stack.pop()
        node = index.prod.get(name)
        if node is None:
            if name in index.inputs and name != "position_ids":
                raise NoMatch(f"the rotary tables read the graph input {name}")
            continue
        if id(node) in needed:
            continue
        if any(a.type in (5, 10) for a in node.attribute):
            raise NoMatch(f"the rotary tables go through {node.op_type} subgraphs")
        needed.add(id(node))
        stack.extend(x for x in node.input if x)
    nodes = [n for n in proto.graph.node if id(n) in needed]
    names = {x for n in nodes for x in n.input}
    inits = [t for t in proto.graph.initializer if t.name in names]
    position = next(i for i in proto.graph.input if i.name == "position_ids")
    graph = helper.make_graph(nodes, "rotary_tables", [position],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                               for n in (rope.cos, rope.sin)], inits)
    model = helper.make_model(graph, opset_imports=list(proto.opset_import),
                              ir_version=proto.ir_version)
    try:
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        cos, sin = session.run(None, {"position_ids": np.arange(context, dtype=np.int64)[None]})
        scattered = np.random.default_rng(0).integers(0, context, (2, 3)).astype(np.int64)
        cos2, sin2 = session.run(None, {"position_ids": scattered})
    except Exception as exc:  # noqa: BLE001 - not a function of positions this can evaluate
        raise NoMatch(f"the rotary tables do not evaluate alone ({type(exc).__name__})") from None
    rot = rope.rot
    if cos.dtype != np.float32 or cos.size != context * rot or cos2.size != 6 * rot:
        raise NoMatch(f"cos is {cos.dtype}{list(cos.shape)}, not one float row of {rot} "
                      "per position")
    tables = []
    for full, again in ((cos, cos2), (sin, sin2)):
        table = full.reshape(context, rot)
        if not np.allclose(again.reshape(2, 3, rot), table[scattered], rtol=0, atol=1e-6):
            raise NoMatch("the rotary tables are not a function of each position alone")
        if not np.array_equal(table[:, :rot // 2], table[:, rot // 2:]):
            raise NoMatch("cos / sin are not cat(freqs, freqs) (an interleaved rotary)")
        tables.append(np.ascontiguousarray(table[:, :rot // 2]))
    return tables[0], tables[1]
