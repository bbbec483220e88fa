"""Sweep the TensorRT Q/DQ recipe on the built-ins and print fidelity on the held-out eval split.

The Q/DQ ONNX is exactly what TensorRT consumes; here it runs in ONNX Runtime on CPU (the
Q/DQ arithmetic is the same: symmetric int8, zero points 0), so its fidelity is measured
without a GPU. Usage:

    .venv/bin/python experiments/trt_qdq_sweep.py --model minilm --methods minmax,percentile,entropy
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from itertools import product
from pathlib import Path

from modelport.backends.tensorrt import qdq as trt_qdq
from modelport.exporters import export_onnx
from modelport.metrics import Budget, budget_misses, fidelity
from modelport.models import resolve_model

OP_SETS = {"weighted": trt_qdq.WEIGHTED_OPS, "matmul": ("MatMul", "Gemm")}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="digits-cnn")
    p.add_argument("--methods", default="minmax,percentile,entropy")
    p.add_argument("--ops", default="weighted,matmul")
    p.add_argument("--fallback", default="0", help="max layers given back to float (comma list)")
    p.add_argument("--no-attention", action="store_true",
                   help="leave activation x activation MatMuls (attention) in float")
    p.add_argument("--calib-samples", type=int, default=0, help="0 = all")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("modelport").setLevel(logging.INFO)

    model = resolve_model(f"builtin:{args.model}")
    calib, evalset = model.default_data()
    if args.calib_samples:
        calib = calib.take(args.calib_samples)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(model, onnx_path)
        reference = trt_qdq.run_onnx(onnx_path, evalset)
        for method in args.methods.split(","):
            for ops, fallback in product(args.ops.split(","), args.fallback.split(",")):
                recipe = trt_qdq.QdqRecipe(method=method, op_types=OP_SETS[ops],
                                           max_fallback=int(fallback),
                                           quantize_attention=not args.no_attention)
                dst = Path(tmp) / f"qdq-{method}-{ops}-{fallback}.onnx"
                t0 = time.perf_counter()
                info = trt_qdq.make_qdq_onnx(onnx_path, dst, calib, recipe, task=model.task)
                seconds = time.perf_counter() - t0
                got = trt_qdq.run_onnx(dst, evalset)
                m = fidelity(got, reference, task=model.task, labels=evalset.labels)
                row = {"model": args.model, "method": method, "ops": ops,
                       "calib": len(calib), "eval": len(evalset),
                       "max_fallback": int(fallback),
                       "attention_int8": not args.no_attention, "fallback": info["fallback_to_float"],
                       "probe": {k: round(v, 5) for k, v in info["probe_fidelity"].items()
                                 if isinstance(v, float)},
                       "layers_quantized": info["layers_quantized"],
                       "build_s": round(seconds, 1),
                       **{k: round(v, 5) for k, v in m.items() if isinstance(v, float)},
                       "passes_budget": not budget_misses(m, Budget())}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
