"""Sweeps judge INT8/FP16/BF16 rows against their runtime's FP32 on each device (building the
FP32 when it was not asked for), and an unreachable --ray address fails in seconds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelport.bench.speed_verdict import comparison_targets, judge_rows


def _row(target, p50, thr, **extra):
    return {"target": target, "precision": target.rsplit(":", 1)[-1], "status": "ok",
            "p50_ms": p50, "latency_batch": 1, "throughput": thr, "throughput_batch": 32,
            **extra}


def test_rows_slower_than_their_fp32_are_flagged_on_each_device():
    # the loopback sweep of the issue: ORT INT8 at 0.81x ORT FP32, shown as plain "ok"
    rows = [_row("torch:cpu:fp32", 2.0, 50.0, status="reference", reference=True),
            _row("onnxruntime:cpu:fp32", 1.0, 100.0),
            _row("onnxruntime:cpu:int8", 1.0 / 0.81, 120.0),
            _row("openvino:cpu:fp32", 1.0, 100.0),
            _row("openvino:cpu:bf16", 0.5, 190.0)]
    judge_rows(rows, added=("onnxruntime:cpu:fp32",))
    by = {r["target"]: r for r in rows}
    int8 = by["onnxruntime:cpu:int8"]
    assert int8["status"] == "slower than fp32" and "0.81x its speed at batch 1" in int8["reason"]
    assert int8["speed_verdict"]["vs"] == "onnxruntime:cpu:fp32"
    assert by["openvino:cpu:bf16"]["status"] == "ok"
    assert by["openvino:cpu:bf16"]["speed_verdict"]["throughput_ratio"] == pytest.approx(1.9)
    assert by["onnxruntime:cpu:fp32"]["added_for_comparison"]
    assert "added_for_comparison" not in by["openvino:cpu:fp32"]
    assert "speed_verdict" not in by["torch:cpu:fp32"]


def test_the_fp32_comparison_is_built_when_not_asked_for():
    assert comparison_targets(["onnxruntime:cpu:int8", "openvino:cpu:bf16",
                               "openvino:cpu:fp32"]) == ["onnxruntime:cpu:fp32"]
    assert comparison_targets(["onnxruntime:cpu:fp32", "onnxruntime:cpu:int8"]) == []
    from modelport.sweep.run import make_spec

    spec = make_spec(["builtin:digits-cnn"], ["onnxruntime:cpu:int8"], (), None, None, {})
    assert spec.targets == ("onnxruntime:cpu:int8", "onnxruntime:cpu:fp32")
    assert spec.compare_only == ("onnxruntime:cpu:fp32",)


@pytest.mark.ray
def test_unreachable_ray_address_fails_in_seconds_naming_it(tmp_path):
    """In a private network namespace, so nothing can be listening on the port."""
    argv = [sys.executable, "-m", "modelport.cli", "sweep", "builtin:digits-cnn", "--targets",
            "onnxruntime:cpu:fp32", "--devices", "dev", "--ray", "127.0.0.1:6399", "--report",
            str(tmp_path / "r")]
    cmd = "ip link set lo up && exec " + " ".join(argv)
    # a hang (the old behaviour: silent for minutes) fails as TimeoutExpired
    done = subprocess.run(["unshare", "--net", "sh", "-c", cmd], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Ray cluster at '127.0.0.1:6399'" in lines[0]
    assert not (tmp_path / "r").exists()


def test_a_kind_without_bf16_gets_a_row_for_bf16_and_the_rest_builds():
    from modelport.sweep.build_task import split_buildable
    from modelport.sweep.plan import kind_features

    buildable, skipped = split_buildable(("openvino:cpu:fp32", "openvino:cpu:bf16"),
                                         kind_features("x86_64:avx2"))
    assert buildable == ["openvino:cpu:fp32"]
    assert skipped[0]["target"] == "openvino:cpu:bf16" and skipped[0]["status"] == "unavailable"
    assert "kind avx2 has no bf16 arithmetic" in skipped[0]["reason"]
    buildable, _ = split_buildable(("openvino:cpu:bf16",), kind_features("x86_64:amx-bf16"))
    assert buildable == ["openvino:cpu:bf16"]  # built for an AMX device, whatever builds it
