"""Each modelport CPU INT8 artifact beside the plain field recipe, in one process, on this CPU.

MiniLM (all-MiniLM-L6-v2) at seq 128. Every artifact is built from one ONNX export and fed the
same rows; fidelity = mean cosine vs torch FP32 on the held-out evaluation sentences (padded to
128 tokens, the TFLite file's static shape). Speed = ratio to torch FP32 eager and to the same
backend's FP32, batch 1 and 32 (TFLite: batch 1, static [1,128]), medians over interleaved
rounds (round 1 times every artifact, then round 2, ...): a burst of load from another process
hits every row alike, but on a shared 2-core VM the ratios stay noisy.

Plain field recipes: ORT ``quantize_dynamic`` defaults; NNCF ``quantize`` with
``model_type=TRANSFORMER`` and nothing else; TFLiteConverter ``Optimize.DEFAULT`` with no
representative dataset (dynamic range). OpenVINO variants (``int8_scope``, weight-only INT8)
are the search for an INT8 form faster than OpenVINO FP32 on a CPU without VNNI.

Also: the per-call overhead of ``Session.infer`` (its feed check) on a tiny model.

    .venv/bin/python experiments/int8_recipes.py --update-results       # writes RESULTS.md + docs/backends.md
    .venv/bin/python experiments/int8_recipes.py --duration 1 --rounds 1 --only openvino
"""

from __future__ import annotations

import argparse
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

log = logging.getLogger("int8_recipes")
BACKENDS = ("onnxruntime", "openvino", "tflite")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=6.0, help="seconds per artifact and batch")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (duration split)")
    p.add_argument("--calib", type=int, default=None, help="calibration sentences (default all)")
    p.add_argument("--only", default=",".join(BACKENDS), help="backends to include")
    p.add_argument("--agreement-duration", type=float, default=0.0,
                   help="seconds per benchmark_app / harness run on the OpenVINO IRs (0: skip)")
    p.add_argument("--update-results", action="store_true",
                   help="write the table into experiments/RESULTS.md (section int8-recipes) "
                        "and its short form into docs/backends.md")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)
    only = tuple(b.strip() for b in args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="modelport-int8r-") as tmp:
        result = run(Path(tmp), only, args)
    from stamp import stamp

    text = report(result) + "\n\n" + f"({stamp()})"
    print(text)
    if args.update_results:
        from results_md import DOCS, update_doc_block, update_section

        update_section("int8-recipes", "## CPU INT8 recipes vs the field's plain recipes — "
                                       "`experiments/int8_recipes.py`\n\n" + text)
        update_doc_block(DOCS / "backends.md", "int8-recipes",
                         readme_table(result) + f"\n\n({stamp()})")


# -- building ------------------------------------------------------------------------------------
def run(tmp: Path, only: tuple[str, ...], args) -> dict[str, Any]:
    from modelport.backends.torch.backend import TorchSession
    from modelport.calibration_data.plan import bench_pool
    from modelport.exporters import export_onnx
    from modelport.metrics import fidelity, run_session
    from modelport.models import resolve_model
    from modelport.shapes import fit_set
    from modelport.specs import TensorSpec

    model = resolve_model("builtin:minilm")
    model.onnx_artifact = export_onnx(model, tmp / "model.onnx")
    calib, evalset = model.default_data()
    if args.calib:
        calib = calib.take(min(args.calib, len(calib)))
    inputs, outputs = model.onnx_artifact.inputs, model.onnx_artifact.outputs
    pool = bench_pool(model, evalset)  # real sentences padded to seq 128
    seq = int(pool["input_ids"].shape[1])
    static = [TensorSpec(s.name, s.dtype, (1, seq)) for s in inputs]
    evalset = fit_set(evalset, static)  # every artifact judged on the same padded rows
    sessions: dict[str, Any] = {"torch FP32 eager": TorchSession(model.module, inputs, outputs)}
    meta: dict[str, dict[str, Any]] = {"torch FP32 eager": {"backend": "torch", "batches": (1, 32)}}
    builders = {"onnxruntime": _onnxruntime, "openvino": _openvino, "tflite": _tflite}
    for backend in only:
        for label, session, info in builders[backend](model, calib, tmp, inputs, outputs):
            sessions[label] = session
            meta[label] = {"backend": backend, **info}
            log.info("built %s", label)
    reference = run_session(sessions["torch FP32 eager"], evalset)
    for label, session in sessions.items():
        batch = 1 if meta[label]["batches"] == (1,) else 32
        got = run_session(session, evalset, batch_size=batch)
        meta[label]["cosine"] = fidelity(got, reference, task=model.task)["cosine_mean"]
    timings = _time_interleaved(sessions, meta, pool, args.duration, args.rounds)
    agreement = _agreement(meta, pool, inputs, outputs, args.agreement_duration)
    for session in sessions.values():
        session.close()
    return {"seq": seq, "eval": len(evalset), "calib": len(calib), "meta": meta,
            "timings": timings, "agreement": agreement, "overhead": infer_overhead()}


def _modelport(backend: str, target: str, model, calib, tmp: Path, inputs, outputs,
               options: dict[str, Any] | None = None):
    """A modelport build and its session, as the export would make them."""
    from modelport import registry
    from modelport.backends.base import BuildOptions
    from modelport.specs import Target

    t = Target.parse(target)
    be = registry.get_backend(t.runtime)()
    workdir = tmp / f"{target.replace(':', '-')}-{abs(hash(str(options))) % 10**6}"
    workdir.mkdir()
    artifact = be.build(model, t, calib if t.precision != "fp32" else None, workdir,
                        BuildOptions(backends={backend: options or {}}))
    return load_artifact(artifact, t, inputs, outputs), artifact


def load_artifact(artifact, target, inputs, outputs):
    """A session of a built ``artifact`` (``target``: a parsed Target), as the export loads it."""
    from modelport import registry

    return registry.get_backend(target.runtime)().load(
        artifact.main_path, target=target, inputs=artifact.inputs or inputs,
        outputs=artifact.outputs or outputs, **artifact.session_options)


def _onnxruntime(model, calib, tmp, inputs, outputs):
    from onnxruntime.quantization import quantize_dynamic

    from modelport.backends.onnxruntime.backend import OnnxRuntimeSession

    for target, label in (("onnxruntime:cpu:fp32", "ORT FP32"),
                          ("onnxruntime:cpu:int8", "ORT INT8, modelport")):
        session, art = _modelport("onnxruntime", target, model, calib, tmp, inputs, outputs)
        yield label, session, {"batches": (1, 32), "fp32": "ORT FP32",
                               "recipe": art.info.get("mode", ""),
                               "cpu_kind": art.info.get("cpu_kind")}
    dst = tmp / "ort-plain.onnx"
    quantize_dynamic(str(model.onnx_artifact.path), str(dst))  # the field's defaults
    yield ("ORT INT8, plain quantize_dynamic", OnnxRuntimeSession(dst, inputs, outputs),
           {"batches": (1, 32), "fp32": "ORT FP32", "recipe": "quantize_dynamic defaults"})


def _openvino(model, calib, tmp, inputs, outputs):
    import nncf
    import openvino as ov

    from modelport.backends.openvino.backend import OpenVINOSession

    session, art = _modelport("openvino", "openvino:cpu:fp32", model, calib, tmp, inputs, outputs)
    yield "OpenVINO FP32", session, {"batches": (1, 32), "fp32": "OpenVINO FP32",
                                     "xml": art.main_path}
    session, art = _modelport("openvino", "openvino:cpu:int8", model, calib, tmp, inputs, outputs)
    yield "OpenVINO INT8, modelport", session, {
        "batches": (1, 32), "fp32": "OpenVINO FP32", "xml": art.main_path,
        "recipe": ", ".join(filter(None, (art.info.get("model_type"),
                                          f"scope {art.info['int8_scope']}"))),
        "cpu_kind": art.info.get("cpu_kind")}
    plain = nncf.quantize(ov.convert_model(str(model.onnx_artifact.path)),
                          nncf.Dataset(calib.samples), model_type=nncf.ModelType.TRANSFORMER,
                          subset_size=len(calib))
    ov.save_model(plain, str(tmp / "ov-plain.xml"), compress_to_fp16=False)
    yield "OpenVINO INT8, plain NNCF transformer preset", OpenVINOSession(
        tmp / "ov-plain.xml", inputs, outputs, device="CPU", inference_precision="f32"), {
        "batches": (1, 32), "fp32": "OpenVINO FP32", "xml": tmp / "ov-plain.xml",
        "recipe": "nncf.quantize(model_type=TRANSFORMER)"}
    for scope in ("all", "no-attention-matmul", "fc-only"):
        options = {"int8_scope": scope}
        session, art = _modelport("openvino", "openvino:cpu:int8", model, calib, tmp, inputs,
                                  outputs, options)
        yield f"OpenVINO INT8, int8_scope {scope}", session, {
            "batches": (1, 32), "fp32": "OpenVINO FP32", "recipe": f"--openvino-int8-scope {scope}",
            "layers": art.info.get("quantized_layers")}
    session, _ = _modelport("openvino", "openvino:cpu:int8wo", model, calib, tmp, inputs, outputs)
    yield "OpenVINO INT8 weight-only (int8wo)", session, {
        "batches": (1, 32), "fp32": "OpenVINO FP32", "recipe": "nncf.compress_weights INT8"}


def _tflite(model, calib, tmp, inputs, outputs):
    import tensorflow as tf

    from modelport.backends.tflite import convert
    from modelport.backends.tflite.session import TFLiteSession

    session, _ = _modelport("tflite", "tflite:cpu:fp32", model, calib, tmp, inputs, outputs)
    yield "TFLite FP32 [1,128]", session, {"batches": (1,), "fp32": "TFLite FP32 [1,128]"}
    session, art = _modelport("tflite", "tflite:cpu:int8", model, calib, tmp, inputs, outputs)
    specs, out_specs = art.inputs, art.outputs
    yield "TFLite INT8, modelport", session, {
        "batches": (1,), "fp32": "TFLite FP32 [1,128]", "recipe": art.info.get("int8_mode"),
        "mb": art.info.get("tflite_size_bytes", 0) / 1e6}
    saved = next(iter(convert._GRAPHS.values())).saved_model  # the same onnx2tf graph
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # the converter's plain default
    dst = tmp / "tfl-plain.tflite"
    dst.write_bytes(converter.convert())
    yield "TFLite INT8, plain converter dynamic range", TFLiteSession(dst, specs, out_specs), {
        "batches": (1,), "fp32": "TFLite FP32 [1,128]", "recipe": "Optimize.DEFAULT",
        "mb": dst.stat().st_size / 1e6}


# -- timing --------------------------------------------------------------------------------------
def _time_interleaved(sessions, meta, pool, duration, rounds) -> dict[str, dict[int, float]]:
    """p50 ms per artifact and batch: the median over interleaved rounds (bench/interleaved.py,
    the timing the recipe search uses)."""
    from modelport.bench.harness import BenchSettings
    from modelport.bench.interleaved import time_interleaved

    settings = {label: BenchSettings(batch_sizes=tuple(meta[label]["batches"]), warmup=3,
                                     duration=duration / rounds, min_iters=3)
                for label in sessions}
    timed = time_interleaved(sessions, pool, settings, rounds=rounds,
                             on_round=lambda r, n: log.info("round %d of %d timed", r, n))
    return {k: dict(t.p50_ms) for k, t in timed.items()}


def _agreement(meta, pool, inputs, outputs, seconds: float) -> list[dict[str, Any]]:
    if seconds <= 0:
        return []
    from ov_benchmark_app import agreement

    rows = []
    for label in ("OpenVINO FP32", "OpenVINO INT8, modelport"):
        xml = meta.get(label, {}).get("xml")
        if xml is None:
            continue
        for batch, streams in ((1, None), (32, 0)):
            for r in agreement(Path(xml), pool, inputs, outputs, hint="f32", batch=batch,
                               streams=streams, duration=seconds):
                rows.append({"ir": label, **r})
    return rows


def infer_overhead(calls: int = 20000) -> dict[str, float]:
    """Session.infer vs the runtime call alone on a one-Add ONNX: the check's cost per call."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from modelport.backends.onnxruntime.backend import OnnxRuntimeSession
    from modelport.specs import TensorSpec

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "tiny", [x], [y])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        session = OnnxRuntimeSession(path, [TensorSpec("x", "float32", ("batch", 4))],
                                     [TensorSpec("y", "float32", ("batch", 4))], threads=1)
        feed = {"x": np.ones((1, 4), np.float32)}
        out: dict[str, list[float]] = {"infer": [], "runtime": []}
        for _ in range(5):  # interleaved
            for name, fn in (("infer", session.infer), ("runtime", session._infer)):
                start = time.perf_counter_ns()
                for _ in range(calls // 5):
                    fn(feed)
                out[name].append((time.perf_counter_ns() - start) / (calls // 5) / 1e3)
        session.close()
    infer, runtime = statistics.median(out["infer"]), statistics.median(out["runtime"])
    return {"infer_us": infer, "runtime_us": runtime, "check_us": infer - runtime,
            "check_share": (infer - runtime) / infer, "calls": calls}


# -- the table -----------------------------------------------------------------------------------
def report(result: dict[str, Any]) -> str:
    meta, timings = result["meta"], result["timings"]
    torch = timings["torch FP32 eager"]
    lines = [(f"MiniLM (all-MiniLM-L6-v2), seq {result['seq']}; fidelity = mean cosine vs "
              f"torch FP32 on {result['eval']} held-out sentences; INT8 calibrated on "
              f"{result['calib']}. Speed: p50 latency ratios, medians over interleaved rounds."),
             "", ("| artifact | recipe | mean cos | b1 vs torch | b1 vs own FP32 | b32 vs torch "
                  "| b32 vs own FP32 |"), "|---|---|---|---|---|---|---|"]
    for label, info in meta.items():
        t = timings[label]
        own = timings.get(info.get("fp32", ""), {})
        cells = []
        for b in (1, 32):
            if b not in t:
                cells += ["—", "—"]
                continue
            cells.append(f"{torch[b] / t[b]:.2f}x")
            cells.append(f"{own[b] / t[b]:.2f}x" if b in own and label != info.get("fp32")
                         else "—")
        lines.append(f"| {label} | {info.get('recipe', '') or ''} | {info['cosine']:.4f} | "
                     + " | ".join([cells[0], cells[1], cells[2], cells[3]]) + " |")
    kinds = {i.get("cpu_kind") for i in meta.values() if i.get("cpu_kind")}
    o = result["overhead"]
    lines += ["", (f"modelport artifacts built with the {', '.join(sorted(kinds)) or '?'} "
                   "recipe (backends/cpu_recipes.py, this machine's features)."),
              "", (f"Session.infer per-call overhead (one-Add ONNX, {o['calls']} calls, ORT, "
                   f"1 thread): {o['infer_us']:.1f} us per call vs {o['runtime_us']:.1f} us for "
                   f"the runtime call alone: the check costs {o['check_us']:.1f} us "
                   f"({100 * o['check_share']:.0f}% of a call on a model that does nothing).")]
    if result["agreement"]:
        from ov_benchmark_app import markdown

        lines += ["", "Harness vs benchmark_app (ratio = harness / benchmark_app):", "",
                  markdown(result["agreement"])]
    return "\n".join(lines)


def readme_table(result: dict[str, Any]) -> str:
    """docs/backends.md's short form: each INT8 artifact against its own backend's FP32, and which of
    them beat it at both batches (the question the CPU recipe table answers)."""
    meta, timings = result["meta"], result["timings"]
    lines = ["| artifact | recipe | mean cos | b1 vs own FP32 | b32 vs own FP32 |",
             "|---|---|---|---|---|"]
    faster = []
    for label, info in meta.items():
        own = timings.get(info.get("fp32", ""), {})
        if label == info.get("fp32") or not own:
            continue
        t = timings[label]
        ratios = {b: own[b] / t[b] for b in (1, 32) if b in t and b in own}
        cells = [f"{ratios[b]:.2f}x" if b in ratios else "—" for b in (1, 32)]
        lines.append(f"| {label} | {info.get('recipe', '') or ''} | {info['cosine']:.4f} | "
                     + " | ".join(cells) + " |")
        if ratios and min(ratios.values()) >= 1.05:
            faster.append(label)
    kinds = sorted({i.get("cpu_kind") for i in meta.values() if i.get("cpu_kind")})
    lines += ["", f"modelport rows built with the {', '.join(kinds) or '?'} recipe. At least 5% "
              "faster than their own FP32 at every batch timed: "
              + (", ".join(faster) if faster else "none") + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
