"""The sensitivity-ranked float fallback on the widened test CNN, every backend side by side.

    .venv/bin/python experiments/float_fallback.py [--calib 64]

Builds tests/support/sensitive_cnn.py:make (random init, three tensors with one channel 100x
the others; the CNN recipe off, so there is something to fall back from) for ONNX Runtime
static INT8, OpenVINO INT8 (NNCF, activations too: ``int8_scope=all``) with our search and with
NNCF's accuracy control, the TensorRT Q/DQ graph (checked in ONNX Runtime) and TFLite
full-integer (selective quantization; and with it off, the 16x8 retry); prints one markdown row each: layers kept float, the probe metric before/after,
trial builds, build seconds. Random calibration images; the probe is their first 64.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FACTORY = ROOT / "tests" / "support" / "sensitive_cnn.py"

CASES = (
    ("onnxruntime:cpu:int8", {}, "float_fallback"),
    ("openvino:cpu:int8", {"int8_scope": "all"}, "float_fallback"),
    ("openvino:cpu:int8", {"int8_scope": "all", "accuracy_control": True}, "accuracy_control"),
    ("tensorrt:cuda:int8", {}, "float_fallback"),
    ("tflite:cpu:int8", {}, "float_fallback"),
    ("tflite:cpu:int8", {"max_fallback": 0}, "int8_budget_retry"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib", type=int, default=64)
    parser.add_argument("--only", default="", help="comma list of runtimes (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from modelport.backends.base import BuildOptions
    from modelport.calibration_data import CalibrationSet
    from modelport.exporters import export_validated
    from modelport.metrics import Budget
    from modelport.models import resolve_model
    from modelport.registry import get_backend
    from modelport.specs import Target

    work = Path(tempfile.mkdtemp(prefix="modelport-fallback-exp-"))
    model = resolve_model(f"{FACTORY}:make")
    model.onnx_artifact = export_validated(model, work / "model.onnx")
    rng = np.random.default_rng(0)
    calib = CalibrationSet([{"image": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
                            for _ in range(args.calib)], source="random images")
    print("| target | how | layers kept float | probe cosine before -> after | trial builds | "
          "build s |")
    print("|---|---|---|---|---|---|")
    only = {r for r in args.only.split(",") if r}
    for i, (name, extra, key) in enumerate(CASES):
        target = Target.parse(name)
        if only and target.runtime not in only:
            continue
        backend = get_backend(target.runtime)()
        options = BuildOptions(budget=Budget(), backends={target.runtime: extra}, cnn_recipe="off")
        start = time.perf_counter()
        (work / str(i)).mkdir()
        try:
            info = backend.build(model, target, calib, work / str(i), options).info
        except Exception as exc:  # noqa: BLE001 - a row says what failed
            print(f"| {name} | {key} | failed: {str(exc)[:80]} | | | |")
            continue
        seconds = time.perf_counter() - start
        print(_row(name, key, info.get(key) or {}, seconds))


def _row(name: str, key: str, record: dict, seconds: float) -> str:
    if key == "int8_budget_retry":
        full = record.get("full_integer", {}).get("cosine_mean")
        int16 = record.get("16x8", {}).get("cosine_mean")
        speed = record.get("speed_ms_p50", {})
        return (f"| {name} | full-integer, else 16x8 if within budget and faster than FP32 | "
                f"chosen: {record.get('chosen', 'full-integer')} (16x8 {speed.get('16x8')} ms vs "
                f"FP32 {speed.get('fp32')} ms) | {full} -> 16x8 {int16} | - | {seconds:.1f} |")
    if key == "accuracy_control":
        return (f"| {name} | NNCF accuracy control | {len(record.get('kept_float', []))} | "
                f"{record.get('int8', 0):.4f} -> {record.get('final', 0):.4f} | - | "
                f"{seconds:.1f} |")
    before = record.get("metric_before", {}).get("cosine_mean")
    after = record.get("metric_after", {}).get("cosine_mean")
    return (f"| {name} | ours ({record.get('ranked_by', '')[:40]}...) | "
            f"{len(record.get('kept_float', []))} | {before} -> {after} | "
            f"{record.get('trial_builds')} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
