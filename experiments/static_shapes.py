"""Static-shape specialization (``--shape``) vs the dynamic graph: MiniLM INT8 on ONNX Runtime
and OpenVINO at 1x128 and 32x128, timed side by side in interleaved rounds in one process.

One bundle per target is built (dynamic axes, as ``export`` writes it); each is loaded twice per
shape: as shipped (dynamic) and with the runtime setting a ``--shape`` bundle carries
(``runtime_settings.shapes``: ONNX Runtime free-dimension overrides, OpenVINO reshape before
compile), which is exactly how a ``--shape`` bundle loads. Every session gets the same rows
(the bundle's stored samples, padded to 128 tokens) and ``--threads`` threads. Fidelity: max
abs difference between the static and the dynamic session's outputs on those rows.

Also (no timing): the node count of ONNX Runtime's optimized INT8 graph dynamic, with the
free-dimension overrides, and with the graph's inputs made static and ONNX shape inference
re-run (the other way to give ONNX Runtime static dims), and whether the last two are the same.

    .venv/bin/python experiments/static_shapes.py                      # ~4 min on 2 cores
    .venv/bin/python experiments/static_shapes.py --rounds 3 --duration 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGETS = ("onnxruntime:cpu:int8", "openvino:cpu:int8")
SHAPES = ((1, 128), (32, 128))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--duration", type=float, default=2.0,
                   help="seconds per session and round at batch 1 (batch 32: twice that)")
    p.add_argument("--threads", type=int, default=1, help="threads of every session")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="modelport-static-") as tmp:
        result = run(Path(tmp), args)
    from stamp import stamp

    print(table(result) + f"\n\n({stamp()})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


def run(tmp: Path, args) -> dict[str, Any]:
    import numpy as np

    import modelport
    from modelport.bench.harness import BenchSettings
    from modelport.bench.interleaved import time_interleaved
    from modelport.bundle import open_bundle
    from modelport.shapes import fit_arrays

    built = modelport.export("builtin:minilm", list(TARGETS), out=tmp, bench=None,
                             progress=False, threads=args.threads)
    sessions, settings, pools, rows = {}, {}, {}, []
    for target in TARGETS:
        bundle = open_bundle(built.bundles[target])
        samples, _ = bundle.samples()
        for batch, seq in SHAPES:
            fixed = {s.name: [batch, seq] for s in bundle.inputs}
            dyn = bundle.session(threads=args.threads)
            static = bundle.session(threads=args.threads, runtime_settings={"shapes": fixed})
            pool = fit_arrays(samples, list(static.inputs.values()))  # padded to seq
            feed = {k: np.resize(v, (batch, seq)) for k, v in pool.items()}
            diff = max(float(np.abs(a - b).max()) for a, b in zip(
                dyn.infer(feed).values(), static.infer(feed).values(), strict=True))
            for kind, session in (("dynamic", dyn), ("static", static)):
                label = f"{target} {batch}x{seq} {kind}"
                sessions[label] = session
                pools[label] = pool
                settings[label] = BenchSettings(batch_sizes=(batch,), warmup=2,
                                                duration=args.duration * (1 if batch == 1 else 2),
                                                min_iters=3)
            rows.append({"target": target, "shape": f"{batch}x{seq}", "batch": batch,
                         "max_abs_diff": diff})
    timed = time_interleaved(sessions, {}, settings, rounds=args.rounds, pools=pools)
    for row in rows:
        for kind in ("dynamic", "static"):
            t = timed[f"{row['target']} {row['shape']} {kind}"]
            row[f"{kind}_p50_ms"] = t.p50_ms[row["batch"]]
            row[f"{kind}_throughput"] = t.throughput[row["batch"]]
            row["rounds"] = t.rounds
        row["speedup_p50"] = row["dynamic_p50_ms"] / row["static_p50_ms"]
    for s in sessions.values():
        s.close()
    graphs = ort_graphs(open_bundle(built.bundles[TARGETS[0]]), tmp, SHAPES[0])
    return {"rows": rows, "threads": args.threads, "rounds": args.rounds, "ort_graphs": graphs}


def ort_graphs(bundle, tmp: Path, shape: tuple[int, int]) -> dict[str, Any]:
    """Nodes of ONNX Runtime's optimized graph: dynamic, overrides, static inputs."""
    import collections

    import onnx
    import onnxruntime as ort

    from modelport.backends.static_shapes import free_dimension_overrides

    src = bundle.artifact_path
    fixed = {s.name: list(shape) for s in bundle.inputs}
    static = onnx.load(str(src))
    for value in static.graph.input:
        for dim, size in zip(value.type.tensor_type.shape.dim, fixed[value.name], strict=True):
            dim.dim_value = size
    del static.graph.value_info[:]
    onnx.save(onnx.shape_inference.infer_shapes(static), str(tmp / "static.onnx"))

    def optimized(path, overrides) -> collections.Counter:
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = str(tmp / "optimized.onnx")
        opts.log_severity_level = 3
        for axis, size in overrides.items():
            opts.add_free_dimension_override_by_name(axis, size)
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return collections.Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath)
                                   .graph.node)

    dyn = optimized(src, {})
    over = optimized(src, free_dimension_overrides(src, fixed))
    stat = optimized(tmp / "static.onnx", {})
    return {"shape": "x".join(map(str, shape)), "dynamic_nodes": sum(dyn.values()),
            "override_nodes": sum(over.values()), "static_graph_nodes": sum(stat.values()),
            "override_equals_static_graph": over == stat}


def table(result: dict[str, Any]) -> str:
    head = ("| target | shape | dynamic p50 ms | static p50 ms | static speedup (dynamic / "
            "static p50) | max abs diff |")
    lines = [head, "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['target']} | {r['shape']} | {r['dynamic_p50_ms']:.2f} | "
                     f"{r['static_p50_ms']:.2f} | {r['speedup_p50']:.3f}x | "
                     f"{r['max_abs_diff']:.1e} |")
    lines.append(f"\n{result['threads']} thread(s) per session, medians over {result['rounds']}"
                 " interleaved rounds")
    g = result.get("ort_graphs")
    if g:
        lines.append(f"ONNX Runtime's optimized INT8 graph at {g['shape']}: {g['dynamic_nodes']} "
                     f"nodes dynamic, {g['override_nodes']} with free-dimension overrides, "
                     f"{g['static_graph_nodes']} with static graph inputs (same op counts: "
                     f"{g['override_equals_static_graph']})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
