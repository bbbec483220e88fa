"""The manifest of one target's bundle, assembled from what the export measured.

Kept beside the bundle writer/reader so the three agree on the fields; the export passes its
context in and never builds the dict itself.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from modelport.io import sha256_file
from modelport.metrics import budget_misses, judged_by
from modelport.specs import Precision, TensorSpec

if TYPE_CHECKING:
    from modelport.backends.base import Artifact, Backend
    from modelport.calibration_data import CalibrationSet
    from modelport.export_steps import ExportContext
    from modelport.specs import Target


def build_manifest(ctx: ExportContext, target: Target, backend: Backend, artifact: Artifact,
                   inputs: list[TensorSpec], outputs: list[TensorSpec],
                   metrics: dict[str, Any] | None, bench_result: Any,
                   allow_drop: bool) -> dict[str, Any]:
    model = ctx.model
    ranges = ctx.calib.value_ranges() if ctx.calib is not None else ctx.evalset.value_ranges()
    in_specs = [TensorSpec(s.name, s.dtype, s.shape, ranges.get(s.name)).to_dict() for s in inputs]
    onnx = model.onnx_artifact
    info = {k: v for k, v in artifact.info.items() if _jsonable(v)}
    chosen = ctx.options.of(backend).changed()
    if chosen:
        info["options"] = {k: v for k, v in chosen.items() if _jsonable(v)}
    preprocessing = dict(model.preprocessing)
    if model.tokenizer_json:
        preprocessing.setdefault("max_length", model.max_length)
    return {
        "model": {"name": model.name, "source": model.source, "task": model.task,
                  "output_kind": model.output_kind, "task_from": model.task_from,
                  "onnx_sha256": sha256_file(onnx.path), "metadata": model.metadata},
        "target": str(target),
        "runtime": {"name": target.runtime, "version": backend.runtime_version(),
                    "extra": backend.extra},
        "artifact": {"file": artifact.main},
        "inputs": in_specs,
        "outputs": [s.to_dict() for s in outputs],
        "bench_dims": model.bench_dims,
        "preprocessing": preprocessing or None,
        "passes": model.metadata.get("passes", []),
        "build": info,
        "export": {"exporter": onnx.exporter, "opset": onnx.opset, "seconds": onnx.seconds,
                   "from_cache": onnx.cache == "hit",
                   "validation": onnx.validation},
        "calibration": _describe(ctx.calib) if target.precision == Precision.INT8 else None,
        "evaluation": _describe(ctx.evalset),
        "accuracy": {"reference": ctx.reference_label, "metrics": metrics,
                     "budget": ctx.budget.to_dict(), "judged_by": judged_by(metrics),
                     "passed": bool(metrics is not None and not budget_misses(metrics, ctx.budget)),
                     "allowed_drop": allow_drop},
        "benchmark": bench_result.to_dict() if bench_result is not None else None,
    }


def _describe(data: CalibrationSet | None) -> dict[str, Any] | None:
    if data is None:
        return None
    return {"sha256": data.sha256(), "samples": len(data), "source": data.source}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
