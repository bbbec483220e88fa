"""Per-layer compare of two ONNX graphs: where does the error start?

Both graphs are run in ONNX Runtime with their intermediate tensors exposed as outputs.
Tensors are matched by name (exporters and ORT's quantizer keep the names of the tensors they
do not remove); in a Q/DQ graph the value a consumer sees is the DequantizeLinear output, so
a tensor followed by QuantizeLinear -> DequantizeLinear is read there. Walking the reference
graph in topological order, each tensor gets its relative L2 error, and the error a node adds
is its output's error minus the largest error of its inputs: the first node whose output error
passes the threshold *and* who added most of it is where the error jumps.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import UsageError

DEFAULT_THRESHOLD = 1e-3  # relative L2 error; FP32 vs FP32 on one runtime is ~1e-7
_QDQ = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
_SKIP_OPS = _QDQ + ("Constant",)


def per_layer_compare(
    ref_path: Path,
    cand_path: Path,
    pool: Mapping[str, np.ndarray],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    batch: int = 8,
    threads: int | None = None,
    top: int = 5,
) -> dict[str, Any]:
    """Locate the first tensor where ``cand`` departs from ``ref`` (both ONNX files)."""
    import onnx

    ref_model = onnx.load(str(ref_path))
    cand_model = onnx.load(str(cand_path))
    ref_graph, cand_graph = _GraphView(ref_model.graph), _GraphView(cand_model.graph)
    order = [(node, t) for node in ref_graph.nodes if node.op_type not in _SKIP_OPS
             for t in node.output if t and t in cand_graph.produced]
    if not order:
        raise UsageError(f"{ref_path.name} and {cand_path.name} share no intermediate tensor "
                         "names: per-layer compare needs two graphs derived from one export")
    tensors = [t for _, t in order]
    ref_names = {t: ref_graph.effective(t) for t in tensors}
    cand_names = {t: cand_graph.effective(t) for t in tensors}
    ref_sess = _session(ref_model, list(dict.fromkeys(ref_names.values())), threads)
    cand_sess = _session(cand_model, list(dict.fromkeys(cand_names.values())), threads)
    acc = _Accumulator(tensors)
    rows = len(next(iter(pool.values())))
    ref_inputs = {i.name for i in ref_sess.get_inputs()}
    cand_inputs = {i.name for i in cand_sess.get_inputs()}
    for start in range(0, rows, batch):
        feed = {k: np.ascontiguousarray(v[start:start + batch]) for k, v in pool.items()}
        r_out = dict(zip([o.name for o in ref_sess.get_outputs()],
                         ref_sess.run(None, {k: v for k, v in feed.items() if k in ref_inputs}),
                         strict=True))
        c_out = dict(zip([o.name for o in cand_sess.get_outputs()],
                         cand_sess.run(None, {k: v for k, v in feed.items() if k in cand_inputs}),
                         strict=True))
        for t in tensors:
            acc.add(t, r_out[ref_names[t]], c_out[cand_names[t]])
    layers = []
    errors: dict[str, float] = {}
    for node, t in order:
        stats = acc.result(t)
        if stats is None:  # integer tensor (shapes, indices) or shapes that differ
            continue
        errors[t] = stats["rel_l2"]
        # tensors the candidate does not have (fused away, e.g. Conv before Relu in a Q/DQ
        # graph) make one region with the node: its error is added by the whole region
        region, boundary = ref_graph.region(node, set(tensors))
        inherited = max((errors.get(b, 0.0) for b in boundary), default=0.0)
        scopes = [_torch_scope(n) for n in region]
        layers.append({"tensor": t, "node": node.name, "op_type": node.op_type,
                       **_torch_scope(node), **stats,
                       "added_error": stats["rel_l2"] - inherited,
                       "region": [n.name for n in region],
                       "region_torch_modules": list(dict.fromkeys(
                           s["torch_module"] for s in scopes if s["torch_module"]))})
    first = next((layer for layer in layers if layer["rel_l2"] > threshold
                  and layer["added_error"] > 0.5 * layer["rel_l2"]), None)
    worst = sorted(layers, key=lambda x: -x["added_error"])[:top]
    return {"reference": str(ref_path), "candidate": str(cand_path), "threshold": threshold,
            "samples": rows, "tensors_compared": len(layers), "first_jump": first,
            "largest_jumps": worst, "layers": layers}


class _GraphView:
    """Producers, and the Q/DQ-aware 'effective' name of each tensor, of one ONNX graph."""

    def __init__(self, graph) -> None:
        self.nodes = list(graph.node)
        self.produced = {o: n for n in self.nodes for o in n.output if o}
        self._consumers: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                self._consumers.setdefault(i, []).append(n)

    def effective(self, tensor: str) -> str:
        """What consumers see: T, or the DequantizeLinear output of T -> Q -> DQ."""
        for q in self._consumers.get(tensor, []):
            if q.op_type == "QuantizeLinear" and q.input[0] == tensor:
                for dq in self._consumers.get(q.output[0], []):
                    if dq.op_type == "DequantizeLinear":
                        return dq.output[0]
        return tensor

    def region(self, node, compared: set[str], limit: int = 64) -> tuple[list, set[str]]:
        """``node`` and the upstream nodes whose outputs are not compared, in graph order,
        and the compared tensors that feed that region."""
        members, boundary, stack = {id(node): node}, set(), [node]
        while stack and len(members) < limit:
            for name in stack.pop().input:
                src = self.source(name) if name else ""
                producer = self.produced.get(src)
                if not src:
                    continue
                if src in compared:
                    boundary.add(src)
                elif producer is not None and producer.op_type not in _SKIP_OPS \
                        and id(producer) not in members:
                    members[id(producer)] = producer
                    stack.append(producer)
        order = {id(n): i for i, n in enumerate(self.nodes)}
        return sorted(members.values(), key=lambda n: order[id(n)]), boundary

    def source(self, tensor: str) -> str:
        """The tensor a DQ output stands for (walks DQ <- Q back to the float tensor)."""
        node = self.produced.get(tensor)
        while node is not None and node.op_type in ("DequantizeLinear", "QuantizeLinear"):
            tensor = node.input[0]
            node = self.produced.get(tensor)
        return tensor


def _session(model, outputs: list[str], threads: int | None):
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(model.SerializeToString())  # leave the caller's intact
    existing = {o.name for o in model.graph.output}
    for name in outputs:
        if name not in existing:
            value = onnx.ValueInfoProto()
            value.name = name  # untyped: ORT infers the type
            model.graph.output.append(value)
    if model.ByteSize() >= 2**31 - 1:
        raise UsageError("per-layer compare holds the graph in memory and this one is over 2 GB")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


class _Accumulator:
    """Streaming error sums per tensor, so a large model never holds every activation."""

    def __init__(self, names: list[str]) -> None:
        self.sums: dict[str, dict[str, float]] = {}
        self.bad: set[str] = set()
        self.names = names

    def add(self, name: str, ref: np.ndarray, got: np.ndarray) -> None:
        if name in self.bad:
            return
        if ref.dtype.kind != "f" or got.dtype.kind != "f" or ref.shape != got.shape:
            self.bad.add(name)
            return
        r = ref.astype(np.float64).ravel()
        g = got.astype(np.float64).ravel()
        d = g - r
        s = self.sums.setdefault(name, {"d2": 0.0, "r2": 0.0, "g2": 0.0, "rg": 0.0, "max": 0.0})
        s["d2"] += float(d @ d)
        s["r2"] += float(r @ r)
        s["g2"] += float(g @ g)
        s["rg"] += float(r @ g)
        s["max"] = max(s["max"], float(np.abs(d).max(initial=0.0)))

    def result(self, name: str) -> dict[str, float] | None:
        s = self.sums.get(name)
        if s is None or name in self.bad:
            return None
        denom = np.sqrt(s["r2"] * s["g2"])
        return {"rel_l2": float(np.sqrt(s["d2"] / s["r2"])) if s["r2"] > 0 else
                (0.0 if s["d2"] == 0 else float("inf")),
                "max_abs_err": s["max"],
                "cosine": float(s["rg"] / denom) if denom > 0 else (1.0 if s["d2"] == 0 else 0.0)}


def _torch_scope(node) -> dict[str, Any]:
    """The torch module a node came from, where the dynamo exporter recorded it."""
    meta = {p.key: p.value for p in node.metadata_props}
    out: dict[str, Any] = {"torch_module": None, "torch_class": None}
    for key, field in (("pkg.torch.onnx.name_scopes", "torch_module"),
                       ("pkg.torch.onnx.class_hierarchy", "torch_class")):
        try:
            values = ast.literal_eval(meta[key]) if key in meta else None
        except (ValueError, SyntaxError):
            values = None
        if isinstance(values, list) and len(values) >= 2:
            out[field] = values[-2] or None  # the last entry is the op itself
    return out


def text_summary(result: dict[str, Any]) -> str:
    from modelport.bench.table import render

    def where(layer: dict[str, Any]) -> str:
        modules = layer.get("region_torch_modules") or []
        module = f", torch module {', '.join(repr(m) for m in modules)}" if modules else ""
        fused = layer["region"][:-1]
        extra = f" (with {', '.join(repr(n) for n in fused)}, absent in the candidate)" if fused \
            else ""
        return (f"node '{layer['node']}' ({layer['op_type']}){extra} -> tensor "
                f"'{layer['tensor']}'{module}")

    first = result["first_jump"]
    head = (f"per-layer: {result['tensors_compared']} tensors compared on {result['samples']} "
            f"samples; ")
    head += (f"error first jumps at {where(first)}: rel L2 {first['rel_l2']:.3g}, "
             f"{first['added_error']:.3g} added by this node" if first else
             f"no tensor passes rel L2 {result['threshold']:g}")
    rows = [{**x, "region_text": " + ".join(x["region"]),
             "modules_text": ", ".join(x["region_torch_modules"]) or "-"}
            for x in result["largest_jumps"]]
    table = render(rows, [
        ("region_text", "node (+ fused upstream)", str), ("op_type", "op", str),
        ("modules_text", "torch module", str),
        ("rel_l2", "rel L2", lambda v: f"{v:.3g}"),
        ("added_error", "added", lambda v: f"{v:.3g}"),
        ("cosine", "cosine", lambda v: f"{v:.6f}"),
    ])
    return head + "\nlargest error added by one node:\n" + table
