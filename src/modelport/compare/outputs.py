"""Run the same inputs through several artifacts and compare every output with the first.

Like ``polygraphy run --onnxrt --trt``, for every runtime modelport registers: per output the
max absolute and relative error, cosine similarity, top-1 agreement, and pass/fail against
``|got - ref| <= atol + rtol * |ref|`` (numpy.allclose's rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.compare.items import Item, open_item
from modelport.errors import UsageError
from modelport.metrics import row_cosines

#: defaults tight enough to catch a wrong FP32 artifact; quantized ones need --atol/--rtol
RTOL = 1e-3
ATOL = 1e-4


def compare(
    paths: Sequence[str | Path],
    *,
    eval: str | Path | None = None,
    rtol: float = RTOL,
    atol: float = ATOL,
    threads: int | None = None,
    per_layer: bool = False,
    layer_threshold: float | None = None,
    max_samples: int | None = None,
) -> dict[str, Any]:
    """Compare ``paths[1:]`` against ``paths[0]`` (or one bundle against its stored reference)."""
    if not paths:
        raise UsageError("give at least one bundle or .onnx file to compare")
    if rtol < 0 or atol < 0:
        raise UsageError("--rtol and --atol must be >= 0")
    items = [open_item(p) for p in paths]
    pool, source = _inputs(items, eval)
    if max_samples:
        pool = {k: v[:max_samples] for k, v in pool.items()}
    rows = len(next(iter(pool.values())))
    results: dict[str, dict[str, np.ndarray]] = {}
    for item in items:
        results[item.label] = run_item(item, pool, threads)
    if len(items) == 1:
        refs = items[0].samples[1]
        if not refs or eval is not None:
            raise UsageError("give two or more artifacts, or one bundle (compared with the "
                             "reference outputs stored in it, on its stored samples)")
        ref_label, ref_out, candidates = "stored reference (build time)", refs, items
    else:
        ref_label, ref_out, candidates = items[0].label, results[items[0].label], items[1:]
    task = next((i.task for i in items if i.task), None)
    comparisons = []
    for item in candidates:
        outs = compare_outputs(ref_out, results[item.label], rtol=rtol, atol=atol, task=task)
        comparisons.append({"label": item.label, "path": str(item.path), "outputs": outs,
                            "passed": all(o["passed"] for o in outs.values())})
    report: dict[str, Any] = {
        "reference": ref_label,
        "inputs": {"source": source, "samples": rows},
        "tolerances": {"rtol": rtol, "atol": atol},
        "comparisons": comparisons,
        "passed": all(c["passed"] for c in comparisons),
        "per_layer": None,
    }
    if per_layer:
        from modelport.compare.per_layer import DEFAULT_THRESHOLD, per_layer_compare

        if len(items) != 2 or not all(i.onnx_path for i in items):
            raise UsageError("--per-layer compares exactly two ONNX-derived artifacts (bundles "
                             "with a .onnx artifact, or .onnx files)")
        report["per_layer"] = per_layer_compare(
            items[0].onnx_path, items[1].onnx_path, pool,
            threshold=DEFAULT_THRESHOLD if layer_threshold is None else layer_threshold,
            threads=threads)
    return report


def _inputs(items: list[Item], evalsrc) -> tuple[dict[str, np.ndarray], str]:
    first = items[0]
    if evalsrc is not None:
        from modelport.calibration_data import load_source

        data = load_source(evalsrc, {s.name: s for s in first.inputs},
                           tokenizer_json=first.tokenizer_json, max_length=first.max_length)
        return data.stacked(), str(evalsrc)
    for item in items:
        feeds = item.samples[0]
        if feeds:
            return feeds, f"samples stored in {item.path}"
    raise UsageError("none of these has stored samples (bare .onnx files): pass --eval "
                     "(a folder of .npz feeds, or a text file for text models)")


def run_item(item: Item, pool: dict[str, np.ndarray], threads: int | None
             ) -> dict[str, np.ndarray]:
    """Outputs of ``item`` for every row of ``pool``, in order (static batches padded)."""
    from modelport.shapes import fit_arrays, static_batch

    feeds = fit_arrays(pool, item.inputs)
    rows = len(next(iter(feeds.values())))
    static = static_batch(item.inputs, None)
    batch = static or min(rows, 32)
    chunks: dict[str, list[np.ndarray]] = {}
    with item.session(threads=threads) as session:
        for start in range(0, rows, batch):
            index = (np.arange(start, start + batch) % rows if static
                     else np.arange(start, min(start + batch, rows)))
            out = session.infer({k: np.ascontiguousarray(v[index]) for k, v in feeds.items()})
            for k, v in out.items():
                chunks.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v)[:rows] for k, v in chunks.items()}


def compare_outputs(
    ref: dict[str, np.ndarray], got: dict[str, np.ndarray], *, rtol: float, atol: float,
    task: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Per output name: errors, cosine, top-1 agreement and pass/fail (matched by name, else
    by position when the two artifacts name their outputs differently)."""
    got_names = list(got)
    out: dict[str, dict[str, Any]] = {}
    for index, (name, r) in enumerate(ref.items()):
        g_name = name if name in got else (got_names[index] if index < len(got_names) else None)
        if g_name is None:
            out[name] = {"passed": False, "error": "output missing"}
            continue
        out[name] = output_metrics(np.asarray(r), np.asarray(got[g_name]), rtol=rtol, atol=atol,
                                   task=task)
    return out


def output_metrics(ref: np.ndarray, got: np.ndarray, *, rtol: float, atol: float,
                   task: str | None = None) -> dict[str, Any]:
    if ref.shape != got.shape:
        if got.size == ref.size:
            got = got.reshape(ref.shape)
        else:
            return {"passed": False, "error": f"shape {list(got.shape)} vs {list(ref.shape)}"}
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    diff = np.abs(g - r)
    allowed = atol + rtol * np.abs(r)
    mismatch = diff > allowed
    cos = row_cosines(g, r)
    metrics: dict[str, Any] = {
        "shape": list(ref.shape),
        "max_abs_err": float(diff.max(initial=0.0)),
        "mean_abs_err": float(diff.mean()) if diff.size else 0.0,
        "max_rel_err": float((diff / np.maximum(np.abs(r), 1e-12)).max(initial=0.0)),
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "mismatch_fraction": float(mismatch.mean()) if mismatch.size else 0.0,
        "passed": bool(not mismatch.any()),
    }
    if ref.ndim == 2 and ref.shape[1] > 1 and task in (None, "classification", "generic"):
        metrics["top1_agreement"] = float((r.argmax(-1) == g.argmax(-1)).mean())
    return metrics


def text_report(report: dict[str, Any]) -> str:
    """The table `modelport compare` prints, then the per-layer verdict if asked for."""
    from modelport.bench.table import fmt_num, render

    rows = []
    for comp in report["comparisons"]:
        for name, m in comp["outputs"].items():
            rows.append({"candidate": comp["label"], "output": name,
                         **{k: v for k, v in m.items() if k != "passed"},
                         "verdict": "PASS" if m["passed"] else "FAIL" + (
                             f" ({m['error']})" if m.get("error") else
                             f" ({100 * m['mismatch_fraction']:.2f}% out of tolerance)")})
    sci = lambda v: "-" if v is None else f"{v:.3g}"
    table = render(rows, [
        ("candidate", "candidate", str), ("output", "output", str),
        ("max_abs_err", "max abs err", sci), ("max_rel_err", "max rel err", sci),
        ("cosine_mean", "cosine mean", fmt_num(6)), ("cosine_min", "cosine min", fmt_num(6)),
        ("top1_agreement", "top-1 agree", lambda v: "-" if v is None else f"{100 * v:.1f}%"),
        ("verdict", "rtol/atol", str),
    ])
    tol = report["tolerances"]
    lines = [(f"reference: {report['reference']}; inputs: {report['inputs']['samples']} samples "
             f"from {report['inputs']['source']}; pass = |got-ref| <= {tol['atol']:g} + "
             f"{tol['rtol']:g}*|ref| everywhere"), table]
    layer = report.get("per_layer")
    if layer:
        from modelport.compare.per_layer import text_summary

        lines += ["", text_summary(layer)]
    return "\n".join(lines)
