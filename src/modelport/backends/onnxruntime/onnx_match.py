"""Small helpers for the pattern rewrites of a KV-cache graph (lm_attention.py, lm_rotary.py,
lm_qkv.py): who makes and who reads each tensor, constants, node order, dead-node removal.

A rewrite that meets anything it does not expect raises NoMatch with the reason; the caller
then leaves the graph as it was, so a reason, never a wrong graph, is the failure mode.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

import numpy as np


class NoMatch(Exception):
    """A graph (or a layer of it) that is not the pattern a rewrite expects."""


class GraphIndex:
    """Producers, consumers and initializers of an onnx GraphProto, read once."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.prod = {o: n for n in graph.node for o in n.output if o}
        self.cons: dict[str, list[Any]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.cons[name].append(node)
        self.inits = {t.name: t for t in graph.initializer}
        self.inputs = {i.name for i in graph.input}

    def made_by(self, name: str, op: str, where: str = "") -> Any:
        node = self.prod.get(name)
        if node is None or node.op_type != op:
            raise NoMatch(f"{where}{name} is not made by {op}")
        return node

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant node output, else None."""
        from onnx import numpy_helper

        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.prod.get(name)
        if node is not None and node.op_type == "Constant" and node.attribute \
                and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def weight(self, name: str) -> np.ndarray | None:
        """A constant's value, only when it is an initializer (an Identity of one counts)."""
        node = self.prod.get(name)
        if node is not None and node.op_type == "Identity":
            name = node.input[0]
        return self.constant(name) if name in self.inits else None

    def attr(self, node: Any, name: str, default: Any = None) -> Any:
        from onnx import helper

        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default


def topological(nodes: list[Any], available: set[str]) -> list[Any]:
    """Kahn's order of ``nodes`` given the names graph inputs and initializers provide."""
    made = {o: idx for idx, n in enumerate(nodes) for o in n.output if o}
    waiting = [0] * len(nodes)
    users: dict[int, list[int]] = defaultdict(list)
    for idx, node in enumerate(nodes):
        for name in {x for x in node.input if x and x not in available}:
            if name not in made:
                raise NoMatch(f"the rewrite would leave {name} without a producer")
            waiting[idx] += 1
            users[made[name]].append(idx)
    ready = deque(idx for idx, count in enumerate(waiting) if count == 0)
    order = []
    while ready:
        idx = ready.popleft()
        order.append(nodes[idx])
        for user in users[idx]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    if len(order) != len(nodes):
        raise NoMatch("the rewritten graph has a cycle")
    return order


def prune(graph: Any) -> int:
    """Drop nodes whose outputs nobody reads (not graph outputs either), then initializers no
    node reads; returns how many nodes went. A graph with subgraphs (If, Loop: they read
    outer names unseen here) is left whole."""
    if any(a.type in (5, 10) for node in graph.node for a in node.attribute):  # GRAPH(S)
        return 0
    keep = {o.name for o in graph.output}
    nodes = list(graph.node)
    removed = 0
    while True:
        read = keep | {name for node in nodes for name in node.input}
        alive = [n for n in nodes if any(o in read for o in n.output if o)]
        if len(alive) == len(nodes):
            break
        removed += len(nodes) - len(alive)
        nodes = alive
    if removed:
        del graph.node[:]
        graph.node.extend(nodes)
    read = {name for node in nodes for name in node.input} | keep
    unused = [t for t in graph.initializer if t.name not in read]
    for tensor in unused:
        graph.initializer.remove(tensor)
    return removed
