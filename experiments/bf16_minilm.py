"""bf16 vs f32 on MiniLM, in one process, interleaved: OpenVINO FP32 / BF16 / INT8 (f32 and bf16
for its float layers) and plain PyTorch FP32 / autocast bf16, on this CPU (its kind recorded).

MiniLM (all-MiniLM-L6-v2) at seq 128, the project's sentences; fidelity = mean cosine vs torch
FP32 on the held-out evaluation sentences. Speed: p50 latency at batch 1 and throughput at batch
32, medians over interleaved rounds (round 1 times every session, then round 2, ...), as ratios
to torch FP32 and to OpenVINO FP32. Needs a CPU with bf16 arithmetic (AVX512_BF16 or AMX).

    .venv/bin/python experiments/bf16_minilm.py                # prints the table
    .venv/bin/python experiments/bf16_minilm.py --rounds 5 --duration 2
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
log = logging.getLogger("bf16_minilm")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--duration", type=float, default=1.5, help="seconds per session, batch, round")
    p.add_argument("--no-int8", action="store_true", help="leave OpenVINO INT8 out")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)
    from modelport.backends.cpu_kinds import host_kind

    kind = host_kind()
    if not kind.bf16:
        sys.exit(f"this CPU ({kind.name}) has no bf16 arithmetic: nothing to compare")
    with tempfile.TemporaryDirectory(prefix="modelport-bf16-") as tmp:
        result = run(Path(tmp), args)
    from stamp import stamp

    print(report(result, kind) + f"\n\n({stamp()})")


def run(tmp: Path, args) -> dict[str, Any]:
    from modelport import registry
    from modelport.backends.base import BuildOptions
    from modelport.backends.openvino.backend import OpenVINOSession
    from modelport.backends.torch.backend import TorchSession
    from modelport.calibration_data.plan import bench_pool
    from modelport.exporters import export_onnx
    from modelport.metrics import fidelity, run_session
    from modelport.models import resolve_model
    from modelport.shapes import fit_set
    from modelport.specs import Target, TensorSpec

    model = resolve_model("builtin:minilm")
    model.onnx_artifact = export_onnx(model, tmp / "model.onnx")
    calib, evalset = model.default_data()
    inputs, outputs = model.onnx_artifact.inputs, model.onnx_artifact.outputs
    pool = bench_pool(model, evalset)
    seq = int(pool["input_ids"].shape[1])
    evalset = fit_set(evalset, [TensorSpec(s.name, s.dtype, (1, seq)) for s in inputs])
    sessions: dict[str, Any] = {
        "torch FP32 eager": TorchSession(model.module, inputs, outputs),
        "torch bf16 autocast (torch:cpu:bf16)": TorchSession(model.module, inputs, outputs,
                                                             autocast=True)}
    targets = ["openvino:cpu:fp32", "openvino:cpu:bf16"] + ([] if args.no_int8 else
                                                            ["openvino:cpu:int8"])
    for name in targets:
        target = Target.parse(name)
        backend = registry.get_backend("openvino")()
        work = tmp / target.slug
        work.mkdir()
        art = backend.build(model, target, calib if target.precision == "int8" else None, work,
                            BuildOptions())
        hint = art.session_options["inference_precision"]
        sessions[f"OpenVINO {target.precision.upper()} ({name}, hint {hint})"] = \
            OpenVINOSession(art.main_path, inputs, outputs, inference_precision=hint)
        if target.precision == "int8":  # the same IR, its float layers in bf16
            sessions["OpenVINO INT8, hint bf16 (same IR)"] = OpenVINOSession(
                art.main_path, inputs, outputs, inference_precision="bf16")
        log.info("built %s", name)
    reference = run_session(sessions["torch FP32 eager"], evalset)
    cosine = {label: fidelity(run_session(s, evalset), reference, task=model.task)["cosine_mean"]
              for label, s in sessions.items()}
    timed = interleaved(sessions, pool, args.rounds, args.duration)
    for s in sessions.values():
        s.close()
    return {"seq": seq, "eval": len(evalset), "cosine": cosine, "timed": timed,
            "rounds": args.rounds, "duration": args.duration}


def interleaved(sessions, pool, rounds: int, duration: float) -> dict[str, dict[str, float]]:
    """Median over rounds of p50 ms at batch 1 and throughput at batch 32 per session."""
    from modelport.bench.harness import BenchSettings, benchmark

    settings = BenchSettings(batch_sizes=(1, 32), warmup=3, duration=duration, min_iters=3)
    seen: dict[str, dict[str, list[float]]] = {k: {"p50": [], "thr": []} for k in sessions}
    for r in range(rounds):
        for label, session in sessions.items():
            result = benchmark(session, pool, settings, label=label, progress=False)
            stats = {s.batch: s for s in result.stats}
            seen[label]["p50"].append(stats[1].p50_ms)
            seen[label]["thr"].append(stats[32].throughput)
        log.info("round %d of %d timed", r + 1, rounds)
    return {k: {"p50_ms": statistics.median(v["p50"]), "throughput": statistics.median(v["thr"])}
            for k, v in seen.items()}


def report(result: dict[str, Any], kind) -> str:
    timed, cos = result["timed"], result["cosine"]
    torch = timed["torch FP32 eager"]
    ov = next(v for k, v in timed.items() if k.startswith("OpenVINO FP32"))
    lines = [(f"MiniLM seq {result['seq']}, CPU kind **{kind.name}** ({kind.label}); "
             f"{result['rounds']} interleaved rounds of {result['duration']} s per batch; "
             f"cosine vs torch FP32 on {result['eval']} held-out sentences."), "",
             ("| session | cosine | b1 p50 ms | b1 vs torch | b1 vs OV FP32 | b32 seq/s | "
             "b32 vs torch | b32 vs OV FP32 |"), "|---|---|---|---|---|---|---|---|"]
    for label, t in timed.items():
        lines.append(
            f"| {label} | {cos[label]:.6f} | {t['p50_ms']:.2f} | "
            f"{torch['p50_ms'] / t['p50_ms']:.2f}x | {ov['p50_ms'] / t['p50_ms']:.2f}x | "
            f"{t['throughput']:.1f} | {t['throughput'] / torch['throughput']:.2f}x | "
            f"{t['throughput'] / ov['throughput']:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
