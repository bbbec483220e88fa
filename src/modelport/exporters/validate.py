"""Every export is checked: ONNX Runtime vs the torch reference on fresh inputs, two batch sizes."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from modelport.errors import ValidationError
from modelport.metrics import row_cosines
from modelport.models import PreparedModel

log = logging.getLogger("modelport")

#: fp32 export tolerances: graph rewrites reorder float sums, never more than this.
ATOL = 1e-4
RTOL = 1e-3


def compare_outputs(
    got: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray], *, atol: float = ATOL,
    rtol: float = RTOL,
) -> dict[str, dict[str, float]]:
    """Per output: max abs error, relative error (max abs err / max |ref|), mean cosine."""
    report = {}
    for name, r in ref.items():
        g = np.asarray(got[name], dtype=np.float64)
        r = np.asarray(r, dtype=np.float64)
        if g.shape != r.shape:
            raise ValidationError(f"output '{name}' has shape {g.shape}, the reference {r.shape}")
        diff = np.abs(g - r)
        cosine = row_cosines(g, r)
        report[name] = {
            "max_abs_err": float(diff.max(initial=0.0)),
            "rel_err": float(diff.max(initial=0.0) / max(np.abs(r).max(initial=0.0), 1e-12)),
            "cosine_mean": float(cosine.mean()),
            "cosine_min": float(cosine.min()),
            "allclose": bool(np.all(diff <= atol + rtol * np.abs(r))),
        }
    return report


def torch_outputs(model: PreparedModel, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch

    with torch.no_grad():
        out = model.module(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feeds.items()})
    if isinstance(out, torch.Tensor):
        out = (out,)
    if isinstance(out, dict):
        out = tuple(out.values())
    return {n: t.detach().numpy() for n, t in zip(model.output_names, out, strict=True)}


def validate(model: PreparedModel, onnx_path: Path, *, batches: tuple[int, ...] = (1, 3)) -> dict:
    """Run ORT and torch on fresh inputs; a mismatch over tolerance is an error, not a warning."""
    if model.module is None:
        return {"skipped": "no torch reference (the model was given as ONNX)"}
    from modelport.backends.onnxruntime.backend import create_session

    session = create_session(onnx_path)  # an op ORT cannot run is named, not a raw ORT error
    # a model may carry a wider, stated tolerance: a Q/DQ graph from QAT runs on ORT's integer
    # kernels, which round a few activations to the neighbouring step compared with fake-quant
    tol = model.metadata.get("validation_tolerance") or {}
    atol, rtol = float(tol.get("atol", ATOL)), float(tol.get("rtol", RTOL))
    result: dict = {"atol": atol, "rtol": rtol, "batches": {}}
    if tol.get("reason"):
        result["tolerance_reason"] = tol["reason"]
    for batch in batches:
        feeds = model.fresh_inputs(batch)
        got = dict(zip(model.output_names, session.run(model.output_names, feeds), strict=True))
        report = compare_outputs(got, torch_outputs(model, feeds), atol=atol, rtol=rtol)
        result["batches"][str(batch)] = report
        bad = {n: r for n, r in report.items() if not r["allclose"]}
        if bad:
            name, r = next(iter(bad.items()))
            raise ValidationError(
                f"exported ONNX does not match torch at batch {batch}: output '{name}' max abs "
                f"error {r['max_abs_err']:.3g} (tolerance {atol} + {rtol}*|ref|); the exporter "
                "changed the model's math: try --exporter torchscript or report the model"
            )
    result["max_abs_err"] = max(
        r["max_abs_err"] for b in result["batches"].values() for r in b.values()
    )
    result["rel_err"] = max(r["rel_err"] for b in result["batches"].values() for r in b.values())
    return result


def export_validated(model: PreparedModel, path: Path, *, opset: int | None = None,
                     simplify: bool = False):
    """``export_onnx`` then ``validate``; a cached graph that fails the check is dropped from
    the cache and the model exported afresh (the check, not the cache key, has the last word)."""
    from modelport.exporters import export_cache
    from modelport.exporters.onnx_export import export_onnx

    artifact = export_onnx(model, path, opset=opset, simplify=simplify)
    try:
        artifact.validation = validate(model, artifact.path)
    except ValidationError as exc:
        if artifact.cache != "hit":
            raise
        log.warning("the cached export of %s failed validation (%s); exporting again",
                    model.name, exc)
        export_cache.drop(artifact.cache_key)
        artifact = export_onnx(model, path, opset=opset, simplify=simplify, from_cache=False)
        artifact.validation = validate(model, artifact.path)
    return artifact
