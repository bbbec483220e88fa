"""Eager attention of the KV-cache graph -> ``com.microsoft.GroupQueryAttention`` (ORT only).

The dynamo export of transformers' eager attention writes, per layer: ``Concat(past, new)``
for the presents, K and V repeated per query group (Unsqueeze -> Expand -> Reshape: copies of
the whole cache on every step), ``MatMul -> Mul(scale) -> Add(mask) -> Softmax -> MatMul`` and
the transposes around them. One GroupQueryAttention node does the same on the cache as it is
(no repeated copies; one KV head per query head is the same op): the mask goes in as
``attention_bias``, and every row's ``seqlens_k`` is the full length (the mask, not the kernel,
says which tokens are padding).

Given the context length, the rotary embedding moves into the op too (lm_rotary.py: cos/sin
tables evaluated from the graph's own rope, positions from ``position_ids``, so left padding
and every rope variant keep their numbers) and q, k, v become one packed projection
(lm_qkv.py): per layer qkv MatMul -> GroupQueryAttention -> o MatMul, as onnxruntime-genai's
model builder writes it; the MLP's gate and up projections likewise become one MatMul and a
Split. That form is kept only when the rewritten graph gives the export's
logits on a left-padded prefill and a decode step (CHECK_TOLERANCE); otherwise, or when a
layer's rope is not the pattern (interleaved, a rotary size the kernel refuses), the rotary
stays as exported and only the attention is rewritten, with the reason in the manifest
(``build.lm_fusions.attention.rotary``).

A graph where any layer differs from the attention pattern (another scaling, no Softmax) is
left as it is: nothing is rewritten unless every layer matches. Decode of a 125 M Llama int4:
the attention 1.35x tokens/s at a 256-token prompt, 1.09x at 32; the rotary and packed QKV
on top of it, docs/language-models.md ("What was tried").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.backends.onnxruntime.onnx_match import GraphIndex, NoMatch, prune, topological

#: the rewritten graph against the exported one on a left-padded prefill and a decode step:
#: largest |difference| / max(1, largest |logit|); fp32 reordering is ~1e-6, a wrong rotary O(1)
CHECK_TOLERANCE = 1e-4
#: graphs past this are not serialized for the check (protobuf's 2 GB limit, and the memory)
CHECK_MAX_BYTES = 1_500_000_000


def rewrite_attention(proto: Any, context: int | None = None) -> dict[str, Any]:
    """Rewrite ``proto`` (an onnx ModelProto) in place; return the manifest's facts.

    With ``context`` (the model's positions) the rotary embedding also moves into the op
    (lm_rotary.py) and q, k, v become one packed projection (lm_qkv.py), when every layer
    matches and the rewritten graph gives the exported graph's logits; else today's form."""
    from modelport.backends.onnxruntime.lm_qkv import pack_siblings
    from modelport.backends.onnxruntime.lm_rotary import match_rope, rotary_tables

    graph = proto.graph
    index = GraphIndex(graph)
    pasts = {i.name: i for i in graph.input if i.name.startswith("past_key_values.")}
    layers = sorted(int(n.split(".")[1]) for n in pasts if n.endswith(".key"))
    if not layers or "attention_mask" not in index.inputs:
        return {"rewritten": 0, "reason": "no KV-cache inputs"}
    try:
        plans = [_match(i, index, pasts) for i in layers]
    except NoMatch as exc:
        return {"rewritten": 0, "reason": str(exc)}
    rotary: dict[str, Any] = {"applied": False}
    try:
        if not context or "position_ids" not in index.inputs:
            raise NoMatch("no context length or position_ids input")
        ropes = [match_rope(index, p["q"], p["k"], p["head_dim"], p["heads"], p["kv_heads"], i)
                 for i, p in zip(layers, plans, strict=True)]
        tables = {}
        for rope in ropes:
            if (rope.cos, rope.sin) not in tables:
                tables[(rope.cos, rope.sin)] = rotary_tables(proto, index, rope, context)
        candidate = type(proto)()
        candidate.CopyFrom(proto)
        packed = _emit(candidate, index, plans, layers, ropes, tables)
        pairs = pack_siblings(candidate)  # the MLP's gate and up projections: one MatMul
        check = _same_outputs(proto, candidate)
        rotary.update(applied=True, positions=context, rotary_dim=ropes[0].rot,
                      tables=len(tables), qkv_packed=packed, pairs_packed=pairs, check=check)
        proto.CopyFrom(candidate)
    except NoMatch as exc:
        rotary["reason"] = str(exc)
    if not rotary["applied"]:
        try:
            _emit(proto, index, plans, layers, None, {})
        except NoMatch as exc:
            return {"rewritten": 0, "reason": str(exc)}
    if not any(o.domain == "com.microsoft" for o in proto.opset_import):
        from onnx import helper

        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return {"rewritten": len(layers), "op": "com.microsoft.GroupQueryAttention",
            "rotary": rotary, "kv_buffer": _past_length_from_mask(proto.graph, set(pasts))}


def _emit(proto: Any, index: GraphIndex, plans: list[dict[str, Any]], layers: list[int],
          ropes: list[Any] | None, tables: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]
          ) -> int:
    """Write the GroupQueryAttention nodes into ``proto``: with ``ropes`` the projections go
    in (packed when lm_qkv matches) and the op rotates; without, the rotated q and k are
    transposed and flattened for it. Returns how many layers got a packed QKV."""
    from onnx import TensorProto, helper, numpy_helper

    from modelport.backends.onnxruntime.lm_qkv import pack_qkv

    graph = proto.graph
    removed = {name for plan in plans for name in plan["removed"]}
    new = [helper.make_node("Shape", ["attention_mask"], ["mp_gqa_shape"]),
           helper.make_node("Gather", ["mp_gqa_shape", "mp_gqa_i1"], ["mp_gqa_total64"], axis=0),
           helper.make_node("Cast", ["mp_gqa_total64"], ["mp_gqa_total"], to=TensorProto.INT32),
           helper.make_node("Gather", ["mp_gqa_shape", "mp_gqa_i0"], ["mp_gqa_batch"], axis=0),
           helper.make_node("Unsqueeze", ["mp_gqa_batch", "mp_gqa_axis0"], ["mp_gqa_batch1"]),
           helper.make_node("Sub", ["mp_gqa_total", "mp_gqa_one32"], ["mp_gqa_last"]),
           helper.make_node("Expand", ["mp_gqa_last", "mp_gqa_batch1"], ["mp_gqa_seqlens"])]
    constants = [
        numpy_helper.from_array(np.array(1, np.int64), "mp_gqa_i1"),
        numpy_helper.from_array(np.array(0, np.int64), "mp_gqa_i0"),
        numpy_helper.from_array(np.array([0], np.int64), "mp_gqa_axis0"),
        numpy_helper.from_array(np.array(1, np.int32), "mp_gqa_one32"),
        numpy_helper.from_array(np.array([0, 0, -1], np.int64), "mp_gqa_flat")]
    table_names = {}
    if ropes:
        # every row's new tokens are all valid (left padding is the mask's business): with
        # query_seqlens given, the kernel rotates each token at its own position_ids entry,
        # also on a first prompt (without it, a prompt uses position_ids[0, 0] + column for
        # every row, wrong for left-padded rows)
        new += [helper.make_node("Shape", ["input_ids"], ["mp_gqa_seq64"], start=1, end=2),
                helper.make_node("Cast", ["mp_gqa_seq64"], ["mp_gqa_seq"], to=TensorProto.INT32),
                helper.make_node("Expand", ["mp_gqa_seq", "mp_gqa_batch1"], ["mp_gqa_qlens"])]
        for n, (key, (cos, sin)) in enumerate(tables.items()):
            table_names[key] = (f"mp_gqa_cos_cache_{n}", f"mp_gqa_sin_cache_{n}")
            constants += [numpy_helper.from_array(cos, table_names[key][0]),
                          numpy_helper.from_array(sin, table_names[key][1])]
    packed = 0
    for n, (i, plan) in enumerate(zip(layers, plans, strict=True)):
        rotary: dict[str, Any] = {}
        if ropes:
            rope = ropes[n]
            try:
                nodes, inits, qkv = pack_qkv(index, rope.q_proj, rope.k_proj, plan["v"], i)
                new += nodes
                constants += inits
                qkv_in = [qkv, "", ""]
                packed += 1
            except NoMatch:
                qkv_in = [rope.q_proj, rope.k_proj, plan["v"]]
            cos, sin = table_names[(rope.cos, rope.sin)]
            extra = [cos, sin, "position_ids", plan["mask"], "", "", "", "", "", "mp_gqa_qlens"]
            rotary = {"do_rotary": 1, "rotary_interleaved": 0}
        else:
            flat = {}
            for kind in ("q", "k"):  # [b, heads, s, d] -> [b, s, heads * d]
                name = f"mp_gqa_{i}_{kind}"
                new += [helper.make_node("Transpose", [plan[kind]], [name + "_t"],
                                         perm=[0, 2, 1, 3]),
                        helper.make_node("Reshape", [name + "_t", "mp_gqa_flat"], [name])]
                flat[kind] = name
            qkv_in = [flat["q"], flat["k"], plan["v"]]
            extra = ["", "", "", plan["mask"]]
        new.append(helper.make_node(
            "GroupQueryAttention",
            [*qkv_in, plan["past_k"], plan["past_v"], "mp_gqa_seqlens", "mp_gqa_total", *extra],
            [plan["out"], f"present.{i}.key", f"present.{i}.value"], domain="com.microsoft",
            name=f"GroupQueryAttention_{i}", num_heads=plan["heads"],
            kv_num_heads=plan["kv_heads"], scale=plan["scale"], **rotary))
    kept = [n for n in graph.node if not (set(n.output) & removed)]
    ordered = topological(kept + new, index.inputs | set(index.inits)
                          | {t.name for t in constants})
    graph.initializer.extend(constants)
    del graph.node[:]
    graph.node.extend(ordered)
    prune(graph)
    return packed


def _same_outputs(before: Any, after: Any) -> dict[str, Any]:
    """Run both graphs on a left-padded two-row prefill and one decode step (each on its own
    presents); NoMatch when the logits of real tokens differ by more than CHECK_TOLERANCE."""
    import onnxruntime as ort

    from modelport.terminal import exception_line

    if before.ByteSize() > CHECK_MAX_BYTES:
        return {"skipped": f"graph over {CHECK_MAX_BYTES / 1e9:.1f} GB"}
    try:
        sessions = [ort.InferenceSession(p.SerializeToString(),
                                         providers=["CPUExecutionProvider"])
                    for p in (before, after)]
    except Exception as exc:  # noqa: BLE001 - a node ORT cannot take in this form
        raise NoMatch(f"the rewritten graph does not load ({exception_line(exc)})") from None
    pasts = [i for i in before.graph.input if i.name.startswith("past_key_values.")]
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], np.int64)
    ids = np.random.default_rng(0).integers(1, 10, mask.shape).astype(np.int64)
    positions = np.clip(np.cumsum(mask, 1) - 1, 0, None)
    worst = 0.0
    feeds = [{"input_ids": ids, "attention_mask": mask, "position_ids": positions,
              **{p.name: np.zeros((2, p.type.tensor_type.shape.dim[1].dim_value, 0,
                                   p.type.tensor_type.shape.dim[3].dim_value), np.float32)
                 for p in pasts}}] * 2
    for step in range(2):
        try:
            outs = [dict(zip([o.name for o in s.get_outputs()], s.run(None, f), strict=True))
                    for s, f in zip(sessions, feeds, strict=True)]
        except Exception as exc:  # noqa: BLE001 - the kernel refused this form of the op
            raise NoMatch(f"the rewritten graph does not run ({exception_line(exc)})") from None
        real = mask[:, -outs[0]["logits"].shape[1]:] == 1
        ref, got = outs[0]["logits"][real], outs[1]["logits"][real]
        error = float(np.abs(ref - got).max() / max(1.0, float(np.abs(ref).max())))
        if not error <= CHECK_TOLERANCE:
            raise NoMatch(f"the rewritten graph's logits differ from the export's by {error:.2g}"
                          f" (relative) at step {step}")
        worst = max(worst, error)
        mask = np.concatenate([mask, np.ones((2, 1), np.int64)], 1)
        nxt = outs[0]["logits"][:, -1].argmax(-1)[:, None].astype(np.int64)
        feeds = [{"input_ids": nxt, "attention_mask": mask,
                  "position_ids": positions[:, -1:] + 1,
                  **{p.name: out[p.name.replace("past_key_values", "present", 1)]
                     for p in pasts}} for out in outs]
    return {"max_relative_error": worst}


def _past_length_from_mask(graph: Any, pasts: set[str]) -> str:
    """Let the past inputs be a buffer longer than the valid cache (ONNX Runtime's
    GroupQueryAttention with past and present bound to one preallocated buffer, kv_buffer.py):
    the export reads the past length from ``Shape(past)[2]`` (cache positions, the mask); it
    becomes ``len(attention_mask) - len(input_ids)``, the same number whenever the past is
    exactly the cache. Returns "shared", or "concat: " and why the past must stay exact."""
    from onnx import helper

    if "input_ids" not in {i.name for i in graph.input}:
        return "concat: no input_ids input"
    past_length = []
    for node in graph.node:
        if not set(node.input) & pasts or node.op_type == "GroupQueryAttention":
            continue
        span = {a.name: a.i for a in node.attribute}
        if node.op_type != "Shape":
            return f"concat: {node.name} ({node.op_type}) reads a past input"
        if (span.get("start"), span.get("end")) == (2, 3):
            past_length.append(node)
        elif (span.get("start", 0), span.get("end")) != (0, 1):  # the batch size is the same
            return f"concat: {node.name} reads a past shape beyond the batch and length"
    if past_length:
        first = past_length[0].output[0]
        graph.node.insert(0, helper.make_node("Sub", ["mp_kv_total", "mp_kv_new"], [first]))
        graph.node.insert(0, helper.make_node("Shape", ["input_ids"], ["mp_kv_new"],
                                              start=1, end=2))
        graph.node.insert(0, helper.make_node("Shape", ["attention_mask"], ["mp_kv_total"],
                                              start=1, end=2))
        for node in past_length[1:]:
            graph.node.insert(3, helper.make_node("Identity", [first], [node.output[0]]))
        for node in past_length:
            graph.node.remove(node)
    return "shared"


def _match(i: int, index: GraphIndex, pasts: dict) -> dict[str, Any]:
    cons = index.cons

    def one(name: str, op: str) -> Any:
        found = [n for n in cons[name] if n.op_type == op]
        if len(found) != 1 or len(cons[name]) != 1:
            raise NoMatch(f"layer {i}: {name} is not used by one {op}")
        return found[0]

    def made_by(name: str, op: str) -> Any:
        return index.made_by(name, op, f"layer {i}: ")

    pk = made_by(f"present.{i}.key", "Concat")
    pv = made_by(f"present.{i}.value", "Concat")
    if len(pk.input) != 2 or len(pv.input) != 2:
        raise NoMatch(f"layer {i}: the presents are not Concat(past, new)")
    past_k, k_rot = pk.input
    past_v, v_t = pv.input
    v_reshape = made_by(made_by(v_t, "Transpose").input[0], "Reshape")
    chain = []

    def repeated(present: str, reader: str) -> str:
        """K or V repeated per query group; as it is when every head has its own (MHA)."""
        uses = [n for n in cons[present] if n.op_type == "Unsqueeze"]
        if not uses and len(cons[present]) == 1 and cons[present][0].op_type == reader:
            return present
        if len(uses) != 1:
            raise NoMatch(f"layer {i}: {present} is not repeated per query group")
        expand = one(uses[0].output[0], "Expand")
        reshape = one(expand.output[0], "Reshape")
        chain.extend([uses[0], expand, reshape])
        return reshape.output[0]

    k_rep = repeated(f"present.{i}.key", "Transpose")
    v_rep = repeated(f"present.{i}.value", "MatMul")
    k_transposed = one(k_rep, "Transpose")
    scores = one(k_transposed.output[0], "MatMul")
    scaled = one(scores.output[0], "Mul")
    scale = index.constant(scaled.input[1])
    if scale is None or scale.size != 1:
        raise NoMatch(f"layer {i}: attention scores are not scaled by one constant")
    masked = one(scaled.output[0], "Add")
    softmax = one(masked.output[0], "Softmax")
    context = one(softmax.output[0], "MatMul")
    if context.input[1] != v_rep:
        raise NoMatch(f"layer {i}: the probabilities do not multiply the repeated values")
    out_t = one(context.output[0], "Transpose")
    out = one(out_t.output[0], "Reshape")
    dims = pasts[f"past_key_values.{i}.key"].type.tensor_type.shape.dim
    kv_heads, head_dim = dims[1].dim_value, dims[3].dim_value
    heads = _heads(scores.input[0], index, head_dim, i) if head_dim else 0
    if not kv_heads or not head_dim or heads % kv_heads or \
            (k_rep == f"present.{i}.key") != (heads == kv_heads):
        raise NoMatch(f"layer {i}: {heads} query heads for {kv_heads} KV heads")
    removed = [n.output[0] for n in [*chain, k_transposed, scores, scaled, masked, softmax,
                                     context, out_t, out, pk, pv, made_by(v_t, "Transpose"),
                                     v_reshape]]
    return {"q": scores.input[0], "k": k_rot, "v": v_reshape.input[0], "past_k": past_k,
            "past_v": past_v, "mask": masked.input[1], "scale": float(scale.reshape(-1)[0]),
            "out": out.output[0], "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim,
            "removed": removed}


#: what may lie between q's head transpose and the attention scores (the exported rotary)
_ROPE_OPS = {"Add", "Mul", "Concat", "Slice", "Neg"}


def _heads(q: str, index: GraphIndex, head_dim: int, i: int) -> int:
    """Query heads: the width of the q projection (MatMul, or MatMul + bias Add, under the
    Reshape -> Transpose that splits heads, found back through the rotary's ops) / head size."""
    seen, todo = set(), [q]
    while todo:
        node = index.prod.get(todo.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in _ROPE_OPS and len(seen) < 40:
            todo.extend(x for x in node.input if x and x not in index.inits)
        elif node.op_type == "Transpose":
            proj = index.prod.get(index.made_by(node.input[0], "Reshape",
                                                f"layer {i}: ").input[0])
            if proj is not None and proj.op_type == "Add":
                proj = index.prod.get(proj.input[0])
            weight = index.weight(proj.input[1]) if proj is not None and \
                proj.op_type == "MatMul" else None
            if weight is None or weight.ndim != 2:
                break
            return int(weight.shape[1]) // head_dim
    raise NoMatch(f"layer {i}: q is not Reshape -> Transpose of a constant projection")
