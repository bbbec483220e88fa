"""OpenVINO INT8: keep the fewest weighted layers in float until the budget holds.

The shared search (backends/fallback.py) over NNCF's ``ignored_scope``. Layers (Convolution,
GroupConvolution, their transposes, MatMul) are ranked by the error each one's quantization
adds alone: the plain NNCF build with every FakeQuantize but that layer's bypassed (one NNCF
run per layer cost 2-5 s on a 12-layer test CNN, a bypass a compile); each trial is a full ``nncf.quantize`` with the trial's layers ignored, so the final model is
exactly what NNCF builds with that scope (its bias correction included), not a patched graph.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

from modelport.backends import fallback
from modelport.backends.fallback import Unit
from modelport.backends.openvino.nncf_output import quiet

log = logging.getLogger("modelport")

WEIGHTED_TYPES = ("Convolution", "GroupConvolution", "ConvolutionBackpropData",
                  "GroupConvolutionBackpropData", "MatMul")
RANKED_BY = ("output error with that layer alone quantized (the NNCF build with every other "
             "FakeQuantize bypassed)")


def keep_fewest_float(ov_model, quantized, calib, task: str, budget, most: int,
                      kwargs: dict[str, Any], *, run: Callable, pass_through: Collection[str]
                      ) -> tuple[Any, dict[str, Any]]:
    """(model, manifest record): ``quantized`` when it meets ``budget`` on the probe, else
    the NNCF build with the fewest layers ignored that does (``most`` at the most).
    ``run(model, samples)``: its outputs on the CPU in f32; ``pass_through``: op types that
    only move values (a quantizer before one quantizes the layer after it)."""
    import nncf

    from modelport.metrics import budget_misses, fidelity

    budget = fallback.with_headroom(budget)
    probe = calib.take(fallback.PROBE_SAMPLES)
    where = f"first {len(probe)} calibration samples (never the evaluation split)"
    reference = run(ov_model, probe.samples)

    def measure(model) -> dict[str, Any]:
        got = run(model, probe.samples)
        return fidelity(got, reference, task=task, labels=probe.labels)

    before = measure(quantized)
    misses = budget_misses(before, budget)
    if not misses:
        return quantized, fallback.not_needed(before, most, where, budget)
    scope = kwargs.get("ignored_scope")
    ignored = set(scope.names) if scope is not None else set()
    names = [op.get_friendly_name() for op in ov_model.get_ordered_ops()
             if op.get_type_name() in WEIGHTED_TYPES and op.get_friendly_name() not in ignored]
    log.info("OpenVINO INT8 misses the budget on %d calibration samples (%s); looking for the "
             "fewest of %d layers to keep float ...", len(probe), "; ".join(misses), len(names))
    built: dict[frozenset[str], tuple[Any, dict[str, Any]]] = {}
    owners = _quantizer_owners(quantized, pass_through)

    def isolate(unit: Unit) -> dict[str, Any]:
        return measure(_only(quantized, owners, unit.name))

    def evaluate(units: Sequence[Unit]) -> dict[str, Any]:
        key = frozenset(u.name for u in units)
        if key not in built:  # the search asks again for its answer: no second NNCF run
            args = {**kwargs, "ignored_scope": _scope(scope, [u.name for u in units])}
            model = quiet(nncf.quantize, ov_model, nncf.Dataset(calib), **args)
            built[key] = (model, measure(model))
            if budget_misses(built[key][1], budget) and len(units) < min(most, len(names)):
                # keep only builds that may be the answer: those within the budget, and the
                # best effort (every candidate float) for when none is
                built[key] = (None, built[key][1])
        return built[key][1]

    candidates = [Unit(n, (n,)) for n in names]
    hopeless = fallback.out_of_reach(candidates, evaluate, budget, before, most, where)
    if hopeless is not None:
        return quantized, hopeless  # the plain build: the export judges and refuses it
    ranking = fallback.rank_by_isolation(candidates, isolate)
    record = fallback.find_fewest(ranking, evaluate, budget, most, before=before, probe=where,
                                  ranked_by=RANKED_BY)
    key = frozenset(u["name"] for u in record["kept_float"])
    return (built[key][0] or quantized) if key in built else quantized, record


def _scope(base, names: Sequence[str]):
    """NNCF IgnoredScope: ``base`` (the recipe's scope, or None) plus these layer names."""
    import nncf

    if base is None:
        return nncf.IgnoredScope(names=list(names), validate=False)
    return nncf.IgnoredScope(names=list(base.names) + list(names), types=list(base.types),
                             patterns=list(base.patterns), validate=False)


def _quantizer_owners(quantized, pass_through: Collection[str]) -> dict[str, set[str]]:
    """FakeQuantize name -> the layers that read it (through ops that only move values)."""
    owners: dict[str, set[str]] = {}
    for op in quantized.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        names = owners.setdefault(op.get_friendly_name(), set())
        todo = [t.get_node() for o in op.outputs() for t in o.get_target_inputs()]
        while todo:
            node = todo.pop()
            if node.get_type_name() in pass_through or node.get_type_name() == "Convert":
                todo.extend(t.get_node() for o in node.outputs() for t in o.get_target_inputs())
            else:
                names.add(node.get_friendly_name())
    return owners


def _only(quantized, owners: dict[str, set[str]], layer: str):
    """A copy of ``quantized`` in which only ``layer``'s quantizers act (every other
    FakeQuantize bypassed): the error that layer's quantization adds alone, on NNCF's ranges."""
    model = quantized.clone()
    for op in model.get_ordered_ops():
        if op.get_type_name() == "FakeQuantize" and layer not in owners.get(
                op.get_friendly_name(), ()):
            op.output(0).replace(op.input_value(0))
    return model
