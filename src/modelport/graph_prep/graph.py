"""A thin view over an ``onnx.ModelProto`` for the CNN INT8 recipe's graph rewrites.

Constants are initializers (the dynamo exporter's form) or ``Constant`` nodes; a rewrite only
changes an initializer that exactly one node reads, so no other consumer sees the change.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np


class GraphView:
    """Producers, consumers and constant values of one graph; ``refresh`` after node edits."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.graph = model.graph
        self.refresh()

    def refresh(self) -> None:
        self.inits = {t.name: t for t in self.graph.initializer}
        self.consts = {n.output[0]: n for n in self.graph.node if n.op_type == "Constant"}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        self.outputs = {o.name for o in self.graph.output}

    # -- constants -------------------------------------------------------------------------
    def value(self, name: str) -> np.ndarray | None:
        """The constant behind ``name`` (initializer or Constant node), else None."""
        from onnx import numpy_helper

        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.consts.get(name)
        if node is not None:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
        return None

    def private_weight(self, name: str) -> bool:
        """An initializer only one node input reads: safe to rewrite in place."""
        return name in self.inits and len(self.consumers.get(name, [])) == 1

    def set_value(self, name: str, value: np.ndarray) -> None:
        """Replace an initializer's data (same name, same dtype as before)."""
        from onnx import numpy_helper

        old = self.inits[name]
        dtype = numpy_helper.to_array(old).dtype
        new = numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
        old.CopyFrom(new)

    def add_initializer(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.fresh_name(name)
        self.graph.initializer.append(numpy_helper.from_array(value, name))
        self.inits[name] = self.graph.initializer[-1]
        return name

    def fresh_name(self, base: str) -> str:
        taken = set(self.inits) | set(self.producer) | {i.name for i in self.graph.input}
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        return name

    # -- structure -------------------------------------------------------------------------
    def only_consumer(self, tensor: str) -> Any | None:
        """The one node reading ``tensor`` when exactly one does and it is no graph output."""
        readers = self.consumers.get(tensor, [])
        if len(readers) != 1 or tensor in self.outputs:
            return None
        return readers[0]

    def opset(self) -> int:
        return next((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")),
                    13)


def attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def conv_weight(view: GraphView, node: Any) -> np.ndarray | None:
    """A Conv's constant, privately held float weight, else None."""
    if node.op_type != "Conv" or len(node.input) < 2 or not view.private_weight(node.input[1]):
        return None
    weight = view.value(node.input[1])
    return weight if weight is not None and weight.dtype.kind == "f" else None


def ensure_bias(view: GraphView, node: Any, channels: int, dtype: np.dtype) -> str:
    """The name of a Conv/Gemm's private bias initializer, adding a zero one if it has none."""
    if len(node.input) >= 3 and node.input[2]:
        name = node.input[2]
        if view.private_weight(name):
            return name
        value = view.value(name)  # shared (or a Constant): give this node its own copy
        fresh = view.add_initializer(f"{node.name or 'node'}_bias",
                                     np.broadcast_to(value, (channels,)).astype(dtype))
        node.input[2] = fresh
        view.refresh()
        return fresh
    fresh = view.add_initializer(f"{node.name or node.output[0]}_bias", np.zeros(channels, dtype))
    while len(node.input) < 2:
        node.input.append("")
    if len(node.input) == 2:
        node.input.append(fresh)
    else:
        node.input[2] = fresh
    view.refresh()
    return fresh
