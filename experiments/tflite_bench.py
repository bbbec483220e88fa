"""TFLite rows for experiments/RESULTS.md: FP32 / FP16 / INT8 .tflite at 1 and 2 threads, timed in the
same run, on the same inputs, as the torch FP32 eager baseline.

Every .tflite is built by the real pipeline (fidelity on the held-out evaluation split; MiniLM
INT8 is kept with --allow-accuracy-drop so its speed can be shown next to its miss). INT8 is also
FP32 and INT8 are also timed with XNNPACK off (TFLite's built-in kernels), the setting of
TensorFlow issue 21698 (INT8 slower than FP32 on x86). Static shapes: batch 1 (and seq 128 for MiniLM), so only batch-1 latency is timed.

    .venv/bin/python experiments/tflite_bench.py                      # full settings (lead)
    .venv/bin/python experiments/tflite_bench.py --duration 1 --models digits-cnn   # quick check
    .venv/bin/python experiments/tflite_bench.py --bundles /tmp/tfl   # build once, time again later
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TQDM_DISABLE", "1")

TARGETS = ("tflite:cpu:fp32", "tflite:cpu:fp16", "tflite:cpu:int8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="digits-cnn,minilm")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per row")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    p.add_argument("--update-results", action="store_true",
                   help="write the table into experiments/RESULTS.md (section 'tflite')")
    p.add_argument("--bundles", type=Path, default=None,
                   help="keep the built bundles here (DIR/MODEL) and reuse those present, so "
                        "the timing can be rerun on a quiet machine without rebuilding")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("modelport").setLevel(logging.WARNING)
    threads = tuple(int(t) for t in args.threads.split(","))
    rows: list[dict] = []
    for name in args.models.split(","):
        rows += bench_model(name.strip(), threads, args.duration, args.warmup, args.bundles)
    table = markdown(rows)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.update_results:
        import sys

        from results_md import update_section

        from modelport.bench.fingerprint import fingerprint

        machine = fingerprint()
        command = "python experiments/tflite_bench.py " + " ".join(sys.argv[1:])
        update_section("tflite", section(table, rows, machine, command))


def section(table: str, rows: list[dict], machine: dict, command: str) -> str:
    build = {r["model"]: r.get("build_s_all_targets") for r in rows}
    return "\n".join([
        "## TFLite / LiteRT: FP32, FP16, INT8 .tflite vs torch FP32 — `experiments/tflite_bench.py`",
        "",
        ("Batch 1 (TFLite files are static-shape; MiniLM at seq 128), p50 latency, each row timed "
        "in this run on the same inputs as the torch eager FP32 row above it at the same thread "
        "count. Fidelity on the held-out split (digits: accuracy on 360 labelled images; MiniLM: "
        "mean cosine to torch on 334 sentences). XNNPACK off = TFLite's built-in kernels."),
        "",
        table,
        "",
        (f"Machine: {machine.get('cpu', '?')}, {machine.get('logical_cores', '?')} cores; ai-edge-litert "
        f"{machine.get('versions', {}).get('ai-edge-litert', '?')}. Build seconds (all three "
        f"targets, onnx2tf + TFLiteConverter): {build}. Command: `{command}`"),
    ])


def build(model, out: Path) -> tuple[list[dict], dict[str, Path], float]:
    """The three .tflite bundles via the real pipeline -> (rows, bundle paths, build seconds)."""
    import modelport

    t0 = time.perf_counter()
    result = modelport.export(model, list(TARGETS), out=out, bench=None, progress=False,
                              allow_accuracy_drop=True, force=True)
    return result.rows, dict(result.bundles), time.perf_counter() - t0


def bench_model(name: str, threads: tuple[int, ...], duration: float, warmup: int,
                keep: Path | None = None) -> list[dict]:
    from modelport.backends.torch.backend import TorchSession
    from modelport.bench import BenchSettings, benchmark
    from modelport.bundle import open_bundle
    from modelport.errors import BundleError
    from modelport.models import resolve_model
    from modelport.shapes import fit_arrays

    model = resolve_model(f"builtin:{name}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tflite-bench-") as tmp:
        saved = keep / name / "rows.json" if keep else None
        if saved and saved.is_file():
            doc = json.loads(saved.read_text())
            result_rows, paths, build_s = doc["rows"], doc["bundles"], doc["build_s"]
        else:
            result_rows, paths, build_s = build(model, keep / name if keep else Path(tmp))
            if saved:
                saved.write_text(json.dumps({"rows": result_rows, "build_s": build_s,
                                             "bundles": {t: str(p) for t, p in paths.items()}},
                                            default=str))
        by_target = {r["target"]: r for r in result_rows}
        bundles = {t: open_bundle(p) for t, p in paths.items()}
        first = next(iter(bundles.values()))
        pool, _ = first.samples()
        pool = fit_arrays(pool, first.inputs)  # torch sees exactly the tflite's static inputs

        def measure(session, label: str, n: int) -> dict:
            settings = BenchSettings(batch_sizes=(1,), warmup=warmup, duration=duration,
                                     threads=n)
            stats = benchmark(session, pool, settings, label=label, progress=False).stats[0]
            return {"p50_ms": stats.p50_ms, "p90_ms": stats.p90_ms,
                    "throughput": stats.throughput, "iters": stats.iters}

        for n in threads:
            with TorchSession(model.module, first.inputs, first.outputs, threads=n) as s:
                base = measure(s, "torch:cpu:fp32", n)
            rows.append({"model": name, "target": "torch:cpu:fp32 (eager)", "threads": n,
                         "xnnpack": None, **base, "speedup": 1.0, "fidelity": None,
                         "size_mb": None})
            for target, bundle in bundles.items():
                # XNNPACK off: TFLite's built-in kernels (the INT8-vs-FP32 comparison of TF #21698)
                variants = [True] if target.endswith("fp16") else [True, False]
                for xnnpack in variants:
                    row = by_target[target]
                    entry = {"model": name, "target": target, "threads": n, "xnnpack": xnnpack,
                             "fidelity": row.get("fidelity"), "status": row.get("status"),
                             "size_mb": row.get("size_mb")}
                    try:
                        with bundle.session(threads=n, xnnpack=xnnpack) as s:
                            got = measure(s, target, n)
                    except BundleError as exc:  # built-in kernels abort on some INT8 graphs
                        rows.append({**entry, "error": str(exc)})
                        continue
                    rows.append({**entry, **got, "speedup": base["p50_ms"] / got["p50_ms"]})
        for r in rows:
            r.setdefault("build_s_all_targets", round(build_s, 1))
    return rows


def markdown(rows: list[dict]) -> str:
    out = ["| model | target | threads | XNNPACK | p50 ms | speedup vs torch | fidelity | size MB |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fid = r.get("fidelity") or {}
        if "accuracy" in fid:
            fidelity = f"acc {100 * fid['accuracy']:.2f}% (drop {100 * fid['accuracy_drop']:.2f})"
        elif fid:
            fidelity = f"cos {fid['cosine_mean']:.4f}"
        else:
            fidelity = "reference"
        if r.get("status") and r["status"] != "ok":
            fidelity += f" — {r['status']}"
        xnn = "-" if r["xnnpack"] is None else ("on" if r["xnnpack"] else "off")
        size = f"{r['size_mb']:.2f}" if r.get("size_mb") else "-"
        if "error" in r:
            out.append(f"| {r['model']} | {r['target']} | {r['threads']} | {xnn} | - | - | "
                       f"{fidelity} — does not run: {r['error'].split(': ', 1)[1]} | {size} |")
            continue
        out.append(f"| {r['model']} | {r['target']} | {r['threads']} | {xnn} | "
                   f"{r['p50_ms']:.3f} | {r['speedup']:.2f}x | {fidelity} | {size} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
