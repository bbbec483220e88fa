"""The speed verdict on recorded benchmark rows: a slower INT8 is flagged, --require-speedup
refuses it, and the fastest target within budget is named. No clock is read here."""

from __future__ import annotations

import pytest

from modelport.bench import statuses
from modelport.bench.speed_verdict import (
    apply_verdict,
    fastest,
    fastest_line,
    speed_verdict,
    with_fp32_comparisons,
)

#: recorded on the AVX2-only EPYC (issue 15): OpenVINO INT8 slower than OpenVINO FP32
OV_FP32 = {"target": "openvino:cpu:fp32", "precision": "fp32", "status": "ok",
           "p50_ms": 10.0, "latency_batch": 1, "throughput": 100.0, "throughput_batch": 32,
           "speedup_latency": 1.40, "speedup_throughput": 1.36}


def _int8(p50: float, thru: float, **extra) -> dict:
    return {"target": "openvino:cpu:int8", "precision": "int8", "status": "ok", "p50_ms": p50,
            "latency_batch": 1, "throughput": thru, "throughput_batch": 32, **extra}


def test_slower_int8_is_flagged_with_ratios():
    row = _int8(10.7, 71.0)  # 1.31x vs 1.40x at batch 1, 0.97x vs 1.36x at batch 32
    assert apply_verdict(row, OV_FP32, require_speedup=False)
    assert row["status"] == statuses.SLOWER_THAN_FP32 == "slower than fp32"
    assert row["status"] in statuses.STATUSES
    verdict = row["speed_verdict"]
    assert verdict["vs"] == "openvino:cpu:fp32" and verdict["slower"]
    assert verdict["latency_ratio"] == pytest.approx(10.0 / 10.7, abs=1e-3)
    assert verdict["throughput_ratio"] == pytest.approx(0.71, abs=1e-3)
    assert "failure" not in row and "0.71x its throughput at batch 32" in row["reason"]


def test_require_speedup_refuses_with_numbers():
    row = _int8(10.7, 71.0)
    assert not apply_verdict(row, OV_FP32, require_speedup=True)
    assert "no bundle" in row["failure"] and "--require-speedup" in row["failure"]
    assert "0.93x its speed at batch 1" in row["failure"]


def test_slower_at_only_one_batch_is_enough():
    row = _int8(5.0, 90.0)  # twice as fast at batch 1, 10% slower at batch 32
    assert not apply_verdict(row, OV_FP32, require_speedup=True)
    assert row["speed_verdict"]["latency_ratio"] == 2.0


def test_within_tolerance_stays_ok():
    row = _int8(10.4, 96.0)  # 0.96x and 0.96x: within the 5% noise band
    assert apply_verdict(row, OV_FP32, require_speedup=True)
    assert row["status"] == "ok" and row["speed_verdict"]["slower"] is False


def test_no_verdict_without_a_common_batch_or_for_fp32():
    static = {"target": "tflite:cpu:int8", "precision": "int8", "status": "ok", "p50_ms": 5.0,
              "latency_batch": 2, "throughput": 10.0, "throughput_batch": 2}
    assert speed_verdict(static, OV_FP32) is None
    fp32 = dict(OV_FP32, p50_ms=99.0)
    assert apply_verdict(fp32, OV_FP32, require_speedup=True) and "speed_verdict" not in fp32
    below = _int8(99.0, 1.0, status=statuses.BELOW_BUDGET)  # already refused by the budget
    assert apply_verdict(below, OV_FP32, require_speedup=True)
    assert below["status"] == statuses.BELOW_BUDGET


def test_fastest_within_budget_skips_slower_and_below_budget():
    rows = [{"target": "torch:cpu:fp32", "reference": True, "status": "reference",
             "speedup_latency": 1.0, "speedup_throughput": 1.0},
            dict(OV_FP32),
            _int8(10.7, 71.0, status=statuses.SLOWER_THAN_FP32, speedup_latency=5.0),
            {"target": "onnxruntime:cpu:int8", "status": "ok", "latency_batch": 1,
             "throughput_batch": 32, "speedup_latency": 2.23, "speedup_throughput": 1.68},
            {"target": "x:cpu:int8", "status": statuses.BELOW_BUDGET, "speedup_latency": 9.0}]
    best = fastest(rows)
    assert best["latency"]["target"] == "onnxruntime:cpu:int8"
    assert best["throughput"]["target"] == "onnxruntime:cpu:int8"
    assert "onnxruntime:cpu:int8 (2.23x at batch 1)" in fastest_line(best)


def test_fp32_of_the_backend_is_added_for_comparison_and_planned_first():
    from modelport import registry
    from modelport.specs import Target

    backend = registry.get_backend("onnxruntime")()
    int8 = Target.parse("onnxruntime:cpu:int8")
    plan, added = with_fp32_comparisons([(int8, backend)], timed=True)
    assert [str(t) for t, _ in plan] == ["onnxruntime:cpu:fp32", "onnxruntime:cpu:int8"]
    assert added == {Target.parse("onnxruntime:cpu:fp32")}
    plan, added = with_fp32_comparisons([(int8, backend)], timed=False)  # --no-bench
    assert [str(t) for t, _ in plan] == ["onnxruntime:cpu:int8"] and not added


def test_table_and_report_show_the_verdict():
    from modelport.bench.export_table import export_table
    from modelport.bench.report_doc import check_report, new_report

    ref = {"target": "torch:cpu:fp32", "precision": "fp32", "reference": True,
           "status": "reference", "p50_ms": 14.0, "latency_batch": 1, "throughput": 73.0,
           "throughput_batch": 32}
    slow = _int8(10.7, 71.0)
    apply_verdict(slow, OV_FP32, require_speedup=True)
    added = dict(OV_FP32, added_for_comparison=True)
    text = export_table([ref, added, slow])
    assert "slower than fp32, no bundle" in text and "added for comparison" in text
    report = new_report(model={"name": "m", "source": "s", "task": None}, rows=[ref, added, slow],
                        settings={"batch_sizes": [1, 32], "warmup": 1, "iters": None,
                                  "duration": 1.0, "min_iters": 1, "rotate": 1, "threads": None},
                        source="model", reference="torch:cpu:fp32", fidelity_data=None)
    report["fastest"] = fastest([ref, added, slow])
    check_report(report, where="test")
    assert report["rows"][2]["speed_verdict"]["slower"] is True
