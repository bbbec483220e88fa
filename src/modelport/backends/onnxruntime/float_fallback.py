"""ONNX Runtime static INT8: keep the fewest weighted layers in float until the budget holds.

The shared search (backends/fallback.py) over ``nodes_to_exclude``. Layers (Conv,
ConvTranspose, Gemm, MatMul) are ranked by the error each one's quantization adds alone
(``nodes_to_quantize=[that node]``, everything else float), measured on a probe slice of the
calibration data against the float graph; every trial re-quantizes from the activation
ranges calibrated once (``calibration_cache_path``).

Measured on tests/support/sensitive_cnn.py (two depthwise layers fed a tensor with one channel
100x the others): leaving one layer out of the quantization does not rank them, because the
tensor keeps the Q/DQ its producer's output quantization puts on it (excluding the depthwise
alone: cosine 0.83, as without fallback); quantizing each layer alone finds the producer and
the depthwise of each pair (0.83-0.96 alone, >= 0.9995 for every other layer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.backends import fallback
from modelport.backends.fallback import Unit

log = logging.getLogger("modelport")

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

#: write(nodes_to_exclude, nodes_to_quantize or None): the quantized graph at dst
Write = Callable[[list[str], "list[str] | None"], None]


def keep_fewest_float(pre: Path, dst: Path, write: Write, judge, task: str, budget, most: int,
                      exclude: Sequence[str], op_types: Sequence[str] | None) -> dict[str, Any]:
    """After the plain build at ``dst``: if it misses ``budget`` on the probe, find the fewest
    weighted layers to keep float (re-writing ``dst``). Returns the manifest record.

    ``judge`` (quantize.Probe): the probe data and the float graph as exported, which every
    trial is compared with (not ``pre``: a CNN recipe's bias correction moves the prepared
    float graph on purpose, toward where the quantized one lands)."""
    from modelport.metrics import budget_misses, fidelity

    budget = fallback.with_headroom(budget)
    probe, where = judge.data, judge.where
    reference = run(judge.graph, probe)

    def measure() -> dict[str, Any]:
        return fidelity(run(dst, probe), reference, task=task, labels=probe.labels)

    before = measure()
    misses = budget_misses(before, budget)
    if not misses:
        return fallback.not_needed(before, most, where, budget)
    from modelport.backends.onnx_qdq import module_names

    modules = module_names(pre)
    candidates = [Unit(name, (name,), detail={"module": modules[name]} if name in modules else {})
                  for name in weighted_nodes(pre, op_types) if name not in exclude]
    log.info("INT8 misses the budget on %d calibration samples (%s); looking for the fewest of "
             "%d layers to keep float ...", len(probe), "; ".join(misses), len(candidates))

    def isolate(unit: Unit) -> dict[str, Any]:
        write(list(exclude), list(unit.nodes))
        return measure()

    def evaluate(units: Sequence[Unit]) -> dict[str, Any]:
        write(list(exclude) + [n for u in units for n in u.nodes], None)
        return measure()

    hopeless = fallback.out_of_reach(candidates, evaluate, budget, before, most, where)
    if hopeless is not None and not fallback.decisions_only(hopeless, budget):
        write(list(exclude), None)  # the plain build: the export judges and refuses it
        return hopeless
    ranking = fallback.rank_by_isolation(candidates, isolate)
    write(list(exclude), None)  # dst back to the plain build until the search writes it
    record = fallback.find_fewest(
        ranking, evaluate, budget, most, before=before, probe=where,
        ranked_by="output error with that layer alone quantized (nodes_to_quantize)",
        every_prefix=fallback.BEST_EFFORT_EVERY)  # a trial re-quantizes from cached ranges
    if hopeless is not None:  # decisions alone missed with every layer float: best effort
        record["metric_all_float"] = hopeless["metric_all_float"]
        record["why"] = ("with every layer in float only the decisions miss (cosine within "
                         "the budget): kept the prefix of the ranking closest to the float "
                         "graph (fallback.closest)")
    return record


def weighted_nodes(path: Path, op_types: Sequence[str] | None) -> list[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    wanted = [t for t in WEIGHTED_OPS if op_types is None or t in op_types]
    return [n.name for n in graph.node if n.op_type in wanted and n.name]


def run(path: Path, data) -> dict[str, np.ndarray]:
    """The graph's outputs over ``data`` on ONNX Runtime CPU (all graph optimizations, as the
    bundle's session runs it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    chunks: dict[str, list[np.ndarray]] = {}
    for feeds in data.batches(16):
        for name, value in zip(names, session.run(names, feeds), strict=True):
            chunks.setdefault(name, []).append(value)
    from modelport.metrics import concat_batches  # zero-shot logits: [images, texts] a batch

    return {k: concat_batches(v) for k, v in chunks.items()}
