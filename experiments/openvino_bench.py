"""OpenVINO rows for experiments/RESULTS.md: MiniLM at seq 128, batch 1 and 32, in one run:
OpenVINO FP32 / INT8 vs torch FP32 eager vs ONNX Runtime INT8, plus the benchmark_app agreement.

Every artifact is built by the real backends from one ONNX export, judged on the held-out
evaluation sentences (mean cosine vs torch FP32), and timed by the common harness on the same
real rows padded to 128 tokens. Rounds interleave the targets (round 1: every target, round 2:
every target, ...) and the medians over rounds are reported, so a burst of load from another
process hits every target alike; speedups are ratios to torch taken in this run.

    .venv/bin/python experiments/openvino_bench.py                       # full settings (lead)
    .venv/bin/python experiments/openvino_bench.py --duration 1 --rounds 1 --agreement-duration 2
    .venv/bin/python experiments/openvino_bench.py --smoothquant          # + INT8 without SmoothQuant
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGETS = ("onnxruntime:cpu:int8", "openvino:cpu:fp32", "openvino:cpu:int8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="1,32")
    p.add_argument("--duration", type=float, default=6.0, help="seconds per target and batch")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (duration split)")
    p.add_argument("--agreement-duration", type=float, default=10.0,
                   help="seconds per benchmark_app / harness run (0: skip the agreement)")
    p.add_argument("--smoothquant", action="store_true",
                   help="also build OpenVINO INT8 without SmoothQuant (fidelity and speed)")
    p.add_argument("--json", type=Path, default=None, help="write every number as JSON here")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("modelport").setLevel(logging.INFO)
    batches = tuple(int(b) for b in args.batches.split(","))
    with tempfile.TemporaryDirectory(prefix="modelport-ovbench-") as tmp:
        result = run(Path(tmp), batches, args.duration, args.rounds, args.agreement_duration,
                     args.smoothquant)
    result["command"] = "python " + shlex.join(sys.argv)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


def run(tmp: Path, batches: tuple[int, ...], duration: float, rounds: int,
        agreement_s: float, smoothquant: bool) -> dict[str, Any]:
    from modelport import registry
    from modelport.backends.base import BuildOptions
    from modelport.backends.torch.backend import TorchSession
    from modelport.bench.fingerprint import fingerprint
    from modelport.calibration_data.plan import bench_pool
    from modelport.exporters import export_onnx
    from modelport.metrics import fidelity, run_session
    from modelport.models import resolve_model
    from modelport.specs import Target

    model = resolve_model("builtin:minilm")
    model.onnx_artifact = export_onnx(model, tmp / "model.onnx")
    calib, evalset = model.default_data()
    inputs, outputs = model.onnx_artifact.inputs, model.onnx_artifact.outputs
    pool = bench_pool(model, evalset)  # real sentences padded to seq 128

    sessions: dict[str, Any] = {"torch:cpu:fp32": TorchSession(model.module, inputs, outputs)}
    builds: dict[str, dict[str, Any]] = {"torch:cpu:fp32": {}}
    variants = [(name, BuildOptions()) for name in TARGETS]
    if smoothquant:
        variants.append(("openvino:cpu:int8 (no SmoothQuant)",
                         BuildOptions(backends={"openvino": {"smooth_quant": False}})))
    for label, options in variants:
        target = Target.parse(label.split(" ")[0])
        backend = registry.get_backend(target.runtime)()
        workdir = tmp / label.replace(":", "-").replace(" ", "_")
        workdir.mkdir()
        t0 = time.perf_counter()
        artifact = backend.build(model, target, calib if target.precision == "int8" else None,
                                 workdir, options)
        builds[label] = {"build_s": time.perf_counter() - t0, "xml": artifact.main_path,
                         "info": artifact.info}
        sessions[label] = backend.load(artifact.main_path, target=target, inputs=inputs,
                                       outputs=outputs, **artifact.session_options)

    reference = run_session(sessions["torch:cpu:fp32"], evalset)
    rows = []
    for label, session in sessions.items():
        got = reference if label.startswith("torch") else run_session(session, evalset)
        rows.append({"target": label, "fidelity": fidelity(got, reference, task=model.task),
                     **{k: v for k, v in builds[label].items() if k != "xml"}})
    timings = _time_interleaved(sessions, pool, batches, duration, rounds)
    for row in rows:
        row["timing"] = timings[row["target"]]
    agreement = []
    if agreement_s > 0:
        from ov_benchmark_app import agreement as compare

        for label in ("openvino:cpu:fp32", "openvino:cpu:int8"):
            hint = builds[label]["info"]["inference_precision_hint"]
            for batch, streams in ((min(batches), None), (max(batches), 0)):
                for r in compare(builds[label]["xml"], pool, inputs, outputs, hint=hint,
                                 batch=batch, streams=streams, duration=agreement_s):
                    agreement.append({"ir": label, **r})
    for session in sessions.values():
        session.close()
    return {"model": "builtin:minilm (all-MiniLM-L6-v2)", "seq": int(pool["input_ids"].shape[1]),
            "eval_samples": len(evalset), "calibration_samples": len(calib), "rows": rows,
            "agreement": agreement, "machine": fingerprint(),
            "settings": {"batches": batches, "duration": duration, "rounds": rounds,
                         "agreement_duration": agreement_s}}


def _time_interleaved(sessions, pool, batches, duration, rounds) -> dict[str, dict[str, Any]]:
    """p50 latency and throughput per target and batch: medians over interleaved rounds."""
    from modelport.bench.harness import BenchSettings, benchmark

    per_round: dict[str, dict[int, list[tuple[float, float]]]] = {k: {} for k in sessions}
    for _ in range(rounds):
        for label, session in sessions.items():
            settings = BenchSettings(batch_sizes=batches, warmup=2, duration=duration / rounds,
                                     min_iters=3)
            for stats in benchmark(session, pool, settings, label=label, progress=False).stats:
                per_round[label].setdefault(stats.batch, []).append((stats.p50_ms,
                                                                     stats.throughput))
    out: dict[str, dict[str, Any]] = {}
    for label, by_batch in per_round.items():
        out[label] = {b: {"p50_ms": statistics.median(p for p, _ in v),
                          "throughput": statistics.median(t for _, t in v)}
                      for b, v in by_batch.items()}
    return out


def report(result: dict[str, Any]) -> str:
    rows = result["rows"]
    batches = sorted(result["rows"][0]["timing"])
    base = next(r for r in rows if r["target"].startswith("torch"))["timing"]
    lines = [(f"MiniLM (all-MiniLM-L6-v2), seq {result['seq']}; fidelity = mean cosine vs torch "
             f"FP32 on {result['eval_samples']} held-out sentences; INT8 calibrated on "
             f"{result['calibration_samples']}."), ""]
    head = "| target | mean cos (min) |"
    rule = "|---|---|"
    for b in batches:
        head += f" b{b} p50 ms | b{b} speedup | b{b} samples/s | b{b} thru speedup |"
        rule += "---|---|---|---|"
    lines += [head, rule]
    for row in rows:
        f = row["fidelity"]
        line = f"| {row['target']} | {f['cosine_mean']:.4f} ({f['cosine_min']:.4f}) |"
        for b in batches:
            t, ref = row["timing"][b], base[b]
            line += (f" {t['p50_ms']:.2f} | {ref['p50_ms'] / t['p50_ms']:.2f}x |"
                     f" {t['throughput']:.1f} | {t['throughput'] / ref['throughput']:.2f}x |")
        lines.append(line)
    int8 = next(r for r in rows if r["target"] == "openvino:cpu:int8")["info"]
    lines += ["", (f"OpenVINO INT8: model type {int8['model_type']}, SmoothQuant "
                  f"{int8['smooth_quant']}, {int8['calibration_samples_used']} of "
                  f"{int8['calibration_samples']} calibration samples used; hint "
                  f"{int8['inference_precision_hint']}.")]
    if result["agreement"]:
        from ov_benchmark_app import markdown

        lines += ["", ("Harness vs benchmark_app (same IR, hint, performance hint, streams, batch,"
                      " duration; ratio = harness / benchmark_app):"), "",
                  markdown(result["agreement"])]
    m = result["machine"]
    lines += ["", (f"Machine: {m.get('cpu', '?')}, {m.get('logical_cores', '?')} "
                  f"cores (shared with other jobs while measured: ratios only). Command: "
                  f"`{result.get('command', '')}`")]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
