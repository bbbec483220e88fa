"""The sweep's pure decisions: CPU kinds, build deduplication, cache keys, speedup baselines;
a bad --optimize value refused by name."""

from __future__ import annotations

import pytest

from modelport.sweep.payload import model_payload, pack_path, text_payload
from modelport.sweep.plan import SweepSpec, cpu_kind, kind_features, plan_builds
from modelport.sweep.report import add_speedups
from tests.conftest import run_cli

AVX2 = {"machine": "x86_64", "cpu_flags": ["avx2", "fma"]}
VNNI = {"machine": "x86_64", "cpu_flags": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]}


def _spec(targets=("onnxruntime:cpu:int8",), recipes=(None,)) -> SweepSpec:
    return SweepSpec(models=(model_payload("builtin:digits-cnn"),), recipes=recipes,
                     targets=targets)


def test_cpu_kind_names_the_kind_the_builds_depend_on():
    assert cpu_kind(AVX2) == "x86_64:avx2"
    assert cpu_kind(VNNI) == "x86_64:avx512-vnni-bf16"
    assert cpu_kind({"machine": "x86_64", "cpu_flags": ["avx2", "avx512f", "avx512_vnni",
                                                       "avx512_bf16", "amx_int8",
                                                       "amx_bf16"]}) == "x86_64:amx-bf16"
    assert cpu_kind({"machine": "aarch64", "cpu_flags": ["asimd"]}) == "aarch64:arm"


def test_a_kind_builds_with_the_int8_recipe_and_bf16_of_its_devices():
    from modelport.backends.cpu_kinds import has_bf16
    from modelport.backends.cpu_recipes import recipe_row

    assert kind_features(cpu_kind(VNNI)) == ("avx2", "fma", "avx512f", "avx512_vnni",
                                             "avx512_bf16")
    assert recipe_row(kind_features(cpu_kind(VNNI))) == "vnni"
    assert has_bf16(kind_features(cpu_kind(VNNI)))
    assert recipe_row(kind_features(cpu_kind(AVX2))) == "no-vnni"
    assert not has_bf16(kind_features(cpu_kind(AVX2)))
    assert kind_features("aarch64:baseline") == ()
    assert kind_features("x86_64:avx2+avx512_vnni") == ("avx2", "avx512_vnni")  # older sweeps


def test_one_build_per_model_recipe_and_cpu_kind():
    spec = _spec(recipes=(None, text_payload("digits-cnn-slim")))
    jobs = plan_builds(spec, [cpu_kind(AVX2), cpu_kind(AVX2), cpu_kind(VNNI)])
    assert len(jobs) == 4  # 2 recipes x 2 kinds; the two AVX2 devices share builds
    assert len({j.key for j in jobs}) == 4


def test_build_key_follows_the_inputs_only():
    kind = cpu_kind(AVX2)
    same = plan_builds(_spec(), [kind])[0].key
    assert plan_builds(_spec(), [kind])[0].key == same
    assert plan_builds(_spec(("onnxruntime:cpu:fp32",)), [kind])[0].key != same


def test_packed_files_hash_by_content(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.npy").write_bytes(b"1")
    first = pack_path(tmp_path / "d")
    (tmp_path / "d" / "a.npy").touch()  # a new mtime, the same bytes
    assert pack_path(tmp_path / "d") == first
    (tmp_path / "d" / "a.npy").write_bytes(b"2")
    assert pack_path(tmp_path / "d") != first


def _row(target, p50, precision="fp32", status="ok"):
    return {"target": target, "precision": precision, "status": status, "p50_ms": p50,
            "latency_batch": 1, "throughput": 1000 / p50, "throughput_batch": 1}


def test_speedups_against_torch_where_the_device_has_it():
    rows = [_row("torch:cpu:fp32", 4.0, status="reference"), _row("onnxruntime:cpu:fp32", 2.0)]
    assert add_speedups(rows) == "torch:cpu:fp32"
    assert rows[1]["speedup_latency"] == 2.0


def test_speedups_against_the_fastest_fp32_artifact_without_torch():
    rows = [_row("openvino:cpu:fp32", 3.0), _row("onnxruntime:cpu:fp32", 2.0),
            _row("onnxruntime:cpu:int8", 1.0, precision="int8"),
            _row("tflite:cpu:fp32", 0.5, status="failed")]
    label = add_speedups(rows)
    assert "onnxruntime:cpu:fp32" in label and "no torch" in label
    assert rows[2]["speedup_latency"] == 2.0 and rows[0]["speedup_latency"] == 2.0 / 3.0
    assert "speedup_latency" not in rows[3]


def test_a_bad_optimize_value_is_a_named_error(tmp_path):
    done = run_cli("sweep", "builtin:digits-cnn", "--targets", "onnxruntime:cpu:int8", "--report",
                   str(tmp_path / "r"), "--optimize", "fastest", timeout=60)
    assert done.returncode == 2
    assert "--optimize" in done.stderr and "latency" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r").exists()
    from modelport.errors import UsageError
    from modelport.sweep.run import make_spec

    with pytest.raises(UsageError, match="--optimize takes latency or throughput"):
        make_spec(["builtin:digits-cnn"], ["onnxruntime:cpu:int8"], (), None, None, {}, search={"objective": "x"})
