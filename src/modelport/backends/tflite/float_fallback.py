"""TFLite full-integer INT8: keep the fewest layers in float until the budget holds.

The TFLite converter keeps single layers in float through TensorFlow's selective
quantization: ``QuantizationDebugger`` calibrates once, then re-quantizes the calibrated
model with ``denylisted_nodes`` (op output tensors left float, a dequantize before and a
quantize after each) in about a second per trial, without calibrating again. So the shared
search (backends/fallback.py) runs here as for ONNX Runtime and OpenVINO:

- ranking: each layer the debugger verifies quantized alone, every other one denylisted
  (``fallback.rank_by_isolation``), as ONNX Runtime ranks. The debugger's own per-layer
  metric (RMSE of each quantized output in units of its step, ``rmse/scale``, what
  TensorFlow's debugger guide ranks suspects by) is recorded beside it but does not rank:
  on tests/support/sensitive_cnn.py its top 8 left cosine at 0.93, because a tensor with one
  wide channel breaks its CONSUMER's quantized input, which denylisting the producer's output
  does not make float;
- each trial: the model with those tensors float, judged on the probe (calibration data,
  never the evaluation split) by ``metrics.fidelity`` + ``metrics.budget_misses``.

The result is no longer integer-only: the manifest lists the float layers, and
``--tflite-max-fallback 0`` keeps every op int8 (a microcontroller runtime needs that).
Measured on EfficientNet-Lite0 (docs/cnn-int8.md): the converter's full-integer file kept
88% of torch's decisions on held-apart photos; 8 float layers of 61 kept 90%, 16 kept 93%.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.backends import fallback
from modelport.backends.fallback import Unit

log = logging.getLogger("modelport")


def keep_fewest_float(converter, dataset, dst: Path, specs, out_specs,
                      feeds: list[dict[str, np.ndarray]], references: list[list[np.ndarray]],
                      task: str, budget, most: int, *, fully_quantize: bool) -> dict[str, Any]:
    """``converter``: the full-integer TFLiteConverter (its representative dataset set);
    ``feeds``/``references``: the probe and the float graph's outputs on it. Writes the chosen
    model to ``dst`` (when no float set meets the budget: the best effort, the ``most``
    top-ranked layers float) and returns the manifest record (fallback.find_fewest's)."""
    import tensorflow as tf

    from modelport.backends.tflite.int16_retry import fidelity_of
    from modelport.metrics import budget_misses

    budget = fallback.with_headroom(budget)
    where = f"first {sum(len(next(iter(f.values()))) for f in feeds)} calibration samples " \
            "(never the evaluation split)"
    # float kernels must be allowed next to the int8 ones for the float islands
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                           tf.lite.OpsSet.TFLITE_BUILTINS]
    log.info("TFLite: calibrating once for the float-fallback search ...")
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: iter(_ordered_feeds(debugger, dataset, feeds)),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(
            fully_quantize=fully_quantize))

    def write(nodes: Sequence[str]) -> None:
        # the ``options`` setter would also rebuild the debug model and refuse one with no
        # quantized layer left (every layer denylisted); get_nondebug_quantized_model reads
        # only these options and re-quantizes the model calibrated once
        debugger._debug_options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=list(nodes), fully_quantize=fully_quantize)
        dst.write_bytes(debugger.get_nondebug_quantized_model())

    def evaluate(units: Sequence[Unit]) -> dict[str, Any]:
        write([n for u in units for n in u.nodes])
        return fidelity_of(dst, specs, out_specs, feeds, references, task)

    before = evaluate([])
    if not budget_misses(before, budget):
        return fallback.not_needed(before, most, where, budget)
    debugger.run()
    candidates = _layers(debugger)
    log.info("TFLite full-integer INT8 misses the budget on the probe; looking for the fewest of "
             "%d layers to keep float ...", len(candidates))
    hopeless = fallback.out_of_reach(candidates, evaluate, budget, before, most, where)
    if hopeless is not None:
        write([])  # the plain full-integer file: the export judges (and refuses) it
        return hopeless
    every = {n for u in candidates for n in u.nodes}

    def isolate(unit: Unit) -> dict[str, Any]:
        write(sorted(every - set(unit.nodes)))
        return fidelity_of(dst, specs, out_specs, feeds, references, task)

    ranking = fallback.rank_by_isolation(candidates, isolate)
    record = fallback.find_fewest(
        ranking, evaluate, budget, most, before=before, probe=where,
        ranked_by="output error with that layer alone quantized (every other one denylisted)")
    return record  # unmet: dst holds the best effort (the ``most`` top-ranked layers float)


def _layers(debugger) -> list[Unit]:
    """The layers the debugger verified (each quantized op output) as Units, with the
    debugger's own ``rmse/scale`` of each on the probe in ``detail``."""
    out = io.StringIO()
    debugger.layer_statistics_dump(out)
    out.seek(0)
    units = []
    for row in csv.DictReader(out):
        scale = float(row.get("scale") or 0.0)
        mse = float(row.get("mean_squared_error") or 0.0)
        if scale <= 0.0 or not row.get("tensor_name"):
            continue
        units.append(Unit(row["tensor_name"], (row["tensor_name"],),
                          detail={"op": row.get("op_name", ""),
                                  "rmse_over_scale": round(float(np.sqrt(mse)) / scale, 6)}))
    return units


def _ordered_feeds(debugger, dataset, feeds: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    """The probe as the debugger takes it: a list of arrays per sample, in the order of the
    calibrated model's input tensors (matched by signature input name), typed as the
    representative dataset types them."""
    from ai_edge_litert.interpreter import Interpreter

    from modelport.backends.tflite.signature import signature_name

    names = [signature_name(s.name, i, "input") for i, s in enumerate(dataset.specs)]
    details = Interpreter(model_content=debugger.calibrated_model).get_input_details()
    order = []
    for detail in details:
        match = [i for i, n in enumerate(names) if detail["name"] in (n, f"serving_default_{n}:0")]
        order.append(match[0] if match else len(order))
    return [[feeds_i[dataset.specs[i].name].astype(dataset.dtypes[i]) for i in order]
            for feeds_i in feeds]
