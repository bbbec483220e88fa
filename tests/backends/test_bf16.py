"""bf16 CPU targets: built and judged like fp16/int8 where the CPU has bf16 arithmetic, refused
with the reason for a CPU without it (features injected as --cpu-features does)."""

from __future__ import annotations

import json

import pytest

from modelport.backends.cpu_kinds import bf16_refusal, has_bf16, host_features, refuse_bf16
from modelport.errors import TargetUnavailable
from modelport.specs import Target
from tests.conftest import run_cli

AVX2 = ("avx2", "fma")
ZEN4 = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16")


def test_bf16_needs_avx512_bf16_or_amx():
    assert has_bf16(ZEN4) and has_bf16(("avx2", "amx_int8", "amx_bf16"))
    assert not has_bf16(AVX2) and not has_bf16(("avx2", "avx512f", "avx512_vnni"))
    assert bf16_refusal(ZEN4) is None
    assert "kind avx2 has no bf16 arithmetic" in bf16_refusal(AVX2)
    # only bf16 CPU targets are concerned
    assert refuse_bf16(Target.parse("openvino:cpu:fp32"), AVX2) is None
    assert refuse_bf16(Target.parse("openvino:cpu:bf16"), ZEN4) is None
    assert refuse_bf16(Target.parse("torch:cpu:bf16"), AVX2)


@pytest.mark.parametrize("target", ["openvino:cpu:bf16", "torch:cpu:bf16"])
def test_bf16_refused_for_a_cpu_without_bf16(target, tmp_path):
    import modelport
    from modelport.backends.base import BuildOptions

    with pytest.raises(TargetUnavailable, match="no bf16 arithmetic"):
        modelport.export("builtin:digits-cnn", ["onnxruntime:cpu:fp32", target],
                         out=tmp_path / "out", bench=None, progress=False,
                         options=BuildOptions(cpu_features=AVX2))
    assert not (tmp_path / "out").exists()  # refused before any build


def test_onnxruntime_bf16_refused_with_the_reason():
    from modelport.backends.onnxruntime.backend import OnnxRuntimeBackend

    avail = OnnxRuntimeBackend.availability(Target.parse("onnxruntime:cpu:bf16"))
    assert not avail.ok and "no bf16 kernels" in avail.reason


def test_bench_rows_say_why_bf16_is_not_built():
    from modelport.bench.matrix import split_available

    wanted = [Target.parse(t) for t in ("openvino:cpu:fp32", "openvino:cpu:bf16",
                                        "torch:cpu:bf16")]
    build, skipped = split_available(wanted, reference_is_torch=True, cpu_features=AVX2)
    assert [str(t) for t in build] == ["openvino:cpu:fp32"]
    assert {r["target"] for r in skipped} == {"openvino:cpu:bf16", "torch:cpu:bf16"}
    assert all("no bf16 arithmetic" in r["reason"] for r in skipped)


def test_cli_refusal_is_one_line_and_writes_nothing(tmp_path):
    proc = run_cli("export", "builtin:digits-cnn", "-t", "openvino:cpu:fp32", "-t",
                   "openvino:cpu:bf16", "--cpu-features", "avx2,fma", "--out",
                   str(tmp_path / "out"), "--no-bench")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no bf16 arithmetic" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def bf16_export(tmp_path_factory):
    if not has_bf16(host_features()):
        pytest.skip("this CPU has no bf16 arithmetic (avx512_bf16 / amx_bf16)")
    import modelport
    from modelport.bench.harness import BenchSettings

    return modelport.export("builtin:digits-cnn", ["openvino:cpu:bf16", "torch:cpu:bf16"],
                            out=tmp_path_factory.mktemp("bf16"), progress=False,
                            bench=BenchSettings(batch_sizes=(1, 4), warmup=1, iters=3))


def test_bf16_targets_built_judged_and_recorded(bf16_export):
    rows = {r["target"]: r for r in bf16_export.rows}
    # the speed verdict compares each with its own runtime's FP32 of this run (built for it)
    assert rows["openvino:cpu:fp32"].get("added_for_comparison")
    for target, fp32 in (("openvino:cpu:bf16", "openvino:cpu:fp32"),
                         ("torch:cpu:bf16", "torch:cpu:fp32")):
        row = rows[target]
        assert row["status"] in ("ok", "slower than fp32"), row
        assert row["speed_verdict"]["vs"] == fp32
        assert {"latency_ratio", "throughput_ratio"} <= set(row["speed_verdict"])
        # bf16 keeps digits' decisions within the fp16-like budget (1 accuracy point)
        assert row["fidelity"]["accuracy_drop"] <= 0.01 and row["fidelity"]["cosine_mean"] > 0.99
    manifest = json.loads((bf16_export.bundles["openvino:cpu:bf16"] / "manifest.json")
                          .read_text())
    build = manifest["build"]
    assert build["inference_precision_hint"] == "bf16"
    assert build["inference_precision_effective"] == "bf16"  # this CPU has bf16
    assert build["cpu_features_assumed"] in (["avx512_bf16"], ["amx_bf16"])
    assert "torch:cpu:bf16" not in bf16_export.bundles  # a table row, never a bundle


def test_bf16_bundle_refused_on_a_cpu_without_bf16(bf16_export, monkeypatch):
    import modelport
    from modelport.backends import cpu_kinds

    bundle = bf16_export.bundles["openvino:cpu:bf16"]
    monkeypatch.setattr(cpu_kinds, "host_features", lambda: AVX2)
    with pytest.raises(TargetUnavailable, match="cannot run openvino:cpu:bf16 here: a CPU of "
                                                "kind avx2 has no bf16 arithmetic"):
        modelport.load(bundle)
