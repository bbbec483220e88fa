"""TFLite has no per-layer float fallback: the one retry for a full-integer INT8 that misses.

ONNX Runtime and OpenVINO keep the fewest sensitive layers in float (backends/fallback.py);
the TFLite converter can only keep whole op *types* in float (``--tflite-float-ops``) or run
every activation in int16 (``16x8``). 16x8 runs on TFLite's reference kernels (XNNPACK has
none for it), so it ships only where it meets the budget AND is faster than TFLite FP32 timed
on this machine; otherwise the full-integer file is kept, the export refuses it on the
evaluation split, and the refusal carries both numbers (``note``).

Fidelity here is measured on calibration feeds (never the evaluation split) with the same
verdict the export applies (``metrics.fidelity`` + ``metrics.budget_misses``).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("modelport")

#: timed runs per file (after 3 warm-up runs) for the speed comparison with FP32
TIMED_RUNS = 30


def full_integer_or_16x8(build: Callable[[str], dict[str, Any]], build_fp32: Callable[[Path], Any],
                         dst: Path, specs, out_specs, feeds: list[dict[str, np.ndarray]],
                         references: list[list[np.ndarray]], task: str, budget,
                         float_fallback: Callable[[], dict[str, Any]] | None = None
                         ) -> dict[str, Any]:
    """Build full-integer INT8 at ``dst``; if it misses ``budget`` on ``feeds``, keep the
    fewest layers float (``float_fallback``: float_fallback.py, rewrites ``dst``), then try
    16x8 and keep it only when it meets the budget and beats FP32 here. Returns the build
    facts, with ``int8_budget_retry`` (the numbers) and, when refused, ``int8_refusal_note``."""
    from modelport.metrics import budget_misses

    info = build("full-integer")
    full = fidelity_of(dst, specs, out_specs, feeds, references, task)
    misses = budget_misses(full, budget)
    record: dict[str, Any] = {"probe": f"{len(feeds)} calibration feeds (never the evaluation "
                                       "split)", "full_integer": _short(full)}
    if not misses:
        return {**info, "int8_budget_retry": {**record, "needed": False}}
    if float_fallback is not None:
        found = float_fallback()
        info = {**info, "float_fallback": found}
        n_float = len(found.get("kept_float", []))
        if n_float:
            info["quantization"] = (f"full-integer post-training, {n_float} layer(s) kept float "
                                    "(QuantizationDebugger denylisted_nodes)")
        if found.get("met"):
            return {**info, "int8_budget_retry": {**record, "needed": True,
                                                  "chosen": "float fallback"}}
        if n_float:  # the best effort: the file the export judges if 16x8 does not do better
            full = fidelity_of(dst, specs, out_specs, feeds, references, task)
    log.info("TFLite full-integer INT8 misses the budget on %d calibration feeds (%s): trying "
             "16x8 (int16 activations)", len(feeds), "; ".join(misses))
    kept = dst.with_name("full-integer.tflite")
    shutil.copyfile(dst, kept)
    try:
        try:
            info16 = build("16x8")
        except Exception as exc:  # noqa: BLE001 - a failed retry keeps the full-integer file
            record["16x8"] = {"error": str(exc)[:200]}
            return _refuse(info, kept, dst, record, "16x8 did not convert", full)
        int16 = fidelity_of(dst, specs, out_specs, feeds, references, task)
        record["16x8"] = _short(int16)
        if budget_misses(int16, budget):
            return _refuse(info, kept, dst, record,
                           f"16x8 misses it too ({_main(int16)})", full)
        fp32_path = dst.with_name("fp32-timing.tflite")
        build_fp32(fp32_path)
        ms16 = _p50_ms(dst, specs, out_specs, feeds[0])
        ms32 = _p50_ms(fp32_path, specs, out_specs, feeds[0])
        fp32_path.unlink(missing_ok=True)
        record["speed_ms_p50"] = {"16x8": round(ms16, 4), "fp32": round(ms32, 4)}
        if ms16 < ms32:
            log.info("TFLite 16x8 meets the budget (%s) and runs %.3f ms vs FP32 %.3f ms: "
                     "shipping 16x8", _main(int16), ms16, ms32)
            kept.unlink()
            return {**info16, "int8_budget_retry": {**record, "needed": True, "chosen": "16x8"}}
        return _refuse(info, kept, dst, record,
                       f"16x8 meets it ({_main(int16)}) but runs {ms16:.3f} ms vs TFLite FP32 "
                       f"{ms32:.3f} ms on this machine (reference kernels)", full)
    finally:
        kept.unlink(missing_ok=True)


def _refuse(info, kept: Path, dst: Path, record, why: str, full) -> dict[str, Any]:
    shutil.copyfile(kept, dst)  # the full-integer file: the export judges (and refuses) it
    note = (f"full-integer INT8 misses the budget on calibration feeds ({_main(full)}); {why}: "
            "no TFLite INT8 form meets the budget faster than FP32")
    log.warning("TFLite: %s", note)
    return {**info, "int8_budget_retry": {**record, "needed": True, "chosen": "full-integer"},
            "int8_refusal_note": note}


def fidelity_of(path: Path, specs, out_specs, feeds, references, task: str) -> dict[str, Any]:
    from modelport.backends.tflite.session import TFLiteSession
    from modelport.metrics import fidelity

    got: dict[str, list[np.ndarray]] = {}
    with TFLiteSession(path, specs, out_specs, threads=None) as session:
        for feed in feeds:
            for name, value in session.infer(feed).items():
                got.setdefault(name, []).append(np.asarray(value))
    names = [s.name for s in out_specs]
    ref = {n: np.concatenate([r[i] for r in references]) for i, n in enumerate(names)}
    return fidelity({n: np.concatenate(got[n]) for n in names}, ref, task=task)


def _p50_ms(path: Path, specs, out_specs, feed) -> float:
    from modelport.backends.tflite.session import TFLiteSession

    times = []
    with TFLiteSession(path, specs, out_specs, threads=None) as session:
        for i in range(3 + TIMED_RUNS):
            start = time.perf_counter()
            session.infer(feed)
            if i >= 3:
                times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def _main(metrics) -> str:
    keys = ("top1_agreement", "accuracy_drop", "cosine_mean")
    return ", ".join(f"{k.replace('_mean', '')} {metrics[k]:.4f}" for k in keys if k in metrics)


def _short(metrics) -> dict[str, Any]:
    return {k: round(float(v), 6) for k, v in metrics.items()
            if k in ("cosine_mean", "cosine_min", "top1_agreement", "accuracy_drop")}
