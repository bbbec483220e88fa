"""The spine's benchmark: MiniLM at seq 128, batch 1 and 32, torch FP32 eager vs ONNX Runtime
FP32 vs ONNX Runtime INT8, in one run, through the real export pipeline (fidelity on the
held-out sentences, timing with the common harness). Writes its section of experiments/RESULTS.md.

    .venv/bin/python experiments/run_bench.py                 # what RESULTS.md quotes (make bench)
    .venv/bin/python experiments/run_bench.py --duration 1    # quick check
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGETS = ("onnxruntime:cpu:fp32", "onnxruntime:cpu:int8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:minilm")
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--duration", type=float, default=6.0, help="seconds per batch size per row")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("modelport").setLevel(logging.WARNING)

    from stamp import stamp

    import modelport
    from modelport.bench import BenchSettings
    from modelport.bench.export_table import export_markdown
    from modelport.bench.fingerprint import fingerprint

    settings = BenchSettings(batch_sizes=(1, 32), warmup=10, duration=args.duration, min_iters=20,
                             threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        result = modelport.export(args.model, args.targets.split(","), out=Path(tmp) / "b",
                                  bench=settings, threads=args.threads, progress=False)
    table = export_markdown(result.rows)
    fp = fingerprint()
    ver = fp["versions"]
    by_target = {r["target"]: r for r in result.rows}
    int8 = by_target.get("onnxruntime:cpu:int8", {})
    body = "\n".join([
        f"## Spine: {args.model} (seq 128), torch vs ONNX Runtime — `experiments/run_bench.py`",
        "",
        (f"Machine: {fp['cpu']}, {fp['logical_cores']} logical cores, flags "
         f"{', '.join(fp['cpu_flags'])}; torch {ver.get('torch')}, onnxruntime "
         f"{ver.get('onnxruntime')}; threads: {args.threads or 'runtime default'}; "
         f"{args.duration:g} s per batch size per row."),
        "",
        table,
        "",
        "Latency columns are batch 1 (p50/p90/p99 ms); throughput is batch 32 (samples/s).",
        f"Written by {stamp()}.",
        "Fidelity: mean cosine vs torch FP32 over the held-out evaluation sentences.",
        "",
        f"Aim (issue 2): ORT INT8 >= 2x torch FP32 at batch 1 — measured "
        f"{int8.get('speedup_latency', float('nan')):.2f}x." if int8 else "",
    ])
    print(body)
    if not args.no_write:
        from results_md import update_section

        print(f"\nwrote {update_section('spine', body)}")


if __name__ == "__main__":
    main()
