"""TensorRT targets, the parts that run without a GPU: the Q/DQ graph TensorRT will consume
(structure + fidelity in ONNX Runtime), the FP16 graph, the build recipe, the engine-cache
decision, the bundle round trip and the messages users see on a machine without TensorRT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelport
from modelport.backends.tensorrt import qdq as trt_qdq
from modelport.backends.tensorrt.backend import TensorRTBackend, to_fp16_onnx
from modelport.backends.tensorrt.engine import (
    DeviceIdentity,
    Recipe,
    cache_decision,
    check_in_profile,
    engine_paths,
    make_profiles,
    parse_axes,
    read_record,
    write_engine,
)
from modelport.bundle import open_bundle
from modelport.calibration_data import CalibrationSet
from modelport.errors import UsageError
from modelport.metrics import Budget, budget_misses, fidelity
from modelport.specs import Target, TensorSpec
from tests.conftest import run_cli

SCHEMA = Path(__file__).resolve().parents[2] / "src" / "modelport" / "bundle" / "manifest.schema.json"


def _here_has_tensorrt_gpu() -> bool:
    return TensorRTBackend.runnable(Target.parse("tensorrt:cuda:int8")).ok


# -- Q/DQ graph structure -------------------------------------------------------------------
def _graph(path: Path):
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    init_types = {i.name: i.data_type for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    users: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    return model.graph, inits, init_types, producers, users


def assert_trt_qdq_form(path: Path, *, expect_quantized: int) -> tuple[int, int]:
    """Independent of trt_qdq.check_trt_qdq: TensorRT's explicit-quantization form, node by node."""
    graph, inits, types, producers, users = _graph(path)
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = node.input[2]
            assert types[zp] == TensorProto.INT8, f"{node.name}: zero point not int8"
            assert not np.any(inits[zp]), f"{node.name}: zero point not 0 (asymmetric)"
    quantized = with_weight = 0
    for node in graph.node:
        if node.op_type not in trt_qdq.WEIGHTED_OPS:
            continue
        x, w = (producers.get(i) for i in node.input[:2])
        if w is None or w.op_type != "DequantizeLinear":
            assert x is None or x.op_type != "DequantizeLinear" or w is None, node.name
            continue  # a layer kept in float
        quantized += 1
        assert x is not None and x.op_type == "DequantizeLinear", f"{node.name}: float activation"
        assert inits[x.input[1]].size == 1, f"{node.name}: activation not per-tensor"
        if w.input[0] in inits:  # a real weight: int8, per output channel, symmetric
            with_weight += 1
            weight = inits[w.input[0]]
            scale = inits[w.input[1]]
            assert types[w.input[0]] == TensorProto.INT8
            axis = next((a.i for a in w.attribute if a.name == "axis"), 1)
            assert scale.size == weight.shape[axis] > 1, f"{node.name}: weight not per-channel"
            assert weight.min() >= -128 and weight.max() <= 127
        # TensorRT: no Q/DQ on the outputs of weighted ops
        assert not any(u.op_type == "QuantizeLinear" for u in users.get(node.output[0], [])), \
            f"{node.name}: output is quantized"
        if len(node.input) > 2 and node.input[2]:
            assert node.input[2] in inits and types[node.input[2]] == TensorProto.FLOAT, \
                f"{node.name}: bias must stay float"
    assert quantized == expect_quantized
    return quantized, with_weight


@pytest.fixture(scope="module")
def digits_qdq(digits, digits_data, tmp_path_factory):
    calib, _ = digits_data
    dst = tmp_path_factory.mktemp("qdq-digits") / "model.onnx"
    info = trt_qdq.make_qdq_onnx(digits.onnx_artifact.path, dst, calib,
                                 trt_qdq.default_recipe(dst), task=digits.task)
    return dst, info


@pytest.fixture(scope="module")
def minilm_qdq(minilm, minilm_data, tmp_path_factory):
    calib, _ = minilm_data
    # 128 sentences, the calibration size the recipe experiments use: the whole split (490)
    # tripled the fixture's time and changes no check below
    calib = calib.take(min(128, len(calib)))
    dst = tmp_path_factory.mktemp("qdq-minilm") / "model.onnx"
    info = trt_qdq.make_qdq_onnx(minilm.onnx_artifact.path, dst, calib,
                                 trt_qdq.default_recipe(dst), task=minilm.task)
    return dst, info


def test_digits_qdq_is_in_tensorrt_form(digits_qdq):
    path, info = digits_qdq
    # 3 Conv + 1 Gemm, every one quantized (the CNN needs no fallback)
    assert assert_trt_qdq_form(path, expect_quantized=4) == (4, 4) and info["layers_quantized"] == 4
    assert info["fallback_to_float"] == [] and trt_qdq.check_trt_qdq(path) == []


def test_minilm_qdq_is_in_tensorrt_form(minilm_qdq):
    path, info = minilm_qdq
    assert trt_qdq.check_trt_qdq(path) == []
    _, linear = assert_trt_qdq_form(path, expect_quantized=info["layers_quantized"])
    # 36 Linear layers (the bulk of the FLOPs): int8 unless the fallback gave them back
    fallen = info["fallback_to_float"]
    assert linear + len(fallen) == 36 and len(fallen) <= trt_qdq.QdqRecipe.max_fallback
    assert linear >= 36 - trt_qdq.QdqRecipe.max_fallback
    ranked = {n: r for r in info["sensitivity"] for n in r["nodes"]}
    assert all(ranked[n]["modules"][0].endswith(".dense") for n in fallen), info["sensitivity"]


def test_digits_qdq_keeps_accuracy_in_onnxruntime(digits, digits_data, digits_qdq):
    _, evalset = digits_data
    ref = trt_qdq.run_onnx(digits.onnx_artifact.path, evalset)
    got = trt_qdq.run_onnx(digits_qdq[0], evalset)
    metrics = fidelity(got, ref, task="classification", labels=evalset.labels)
    assert budget_misses(metrics, Budget()) == [], metrics
    assert metrics["top1_agreement"] >= 0.98


def test_minilm_qdq_keeps_the_budget_in_onnxruntime(minilm, minilm_data, minilm_qdq):
    """Held-out sentences (never calibrated on, never used to pick fallbacks)."""
    _, evalset = minilm_data
    ref = trt_qdq.run_onnx(minilm.onnx_artifact.path, evalset)
    got = trt_qdq.run_onnx(minilm_qdq[0], evalset)
    metrics = fidelity(got, ref, task="embedding")
    assert metrics["cosine_mean"] >= Budget().min_cosine, (metrics, minilm_qdq[1]["fallback_to_float"])


def test_structure_check_catches_asymmetric_and_per_tensor(digits_qdq, tmp_path):
    model = onnx.load(str(digits_qdq[0]))
    zps = [i for i in model.graph.initializer if i.data_type == TensorProto.INT8 and not i.dims]
    zps[0].CopyFrom(numpy_helper.from_array(np.array(3, np.int8), zps[0].name))
    bad = tmp_path / "asym.onnx"
    onnx.save(model, str(bad))
    assert any("non-zero zero point" in p for p in trt_qdq.check_trt_qdq(bad))

    model = onnx.load(str(digits_qdq[0]))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    dq = next(n for n in model.graph.node if n.output[0] == conv.input[1])
    scale = next(i for i in model.graph.initializer if i.name == dq.input[1])
    scale.CopyFrom(numpy_helper.from_array(np.array(0.01, np.float32), scale.name))
    bad = tmp_path / "per-tensor.onnx"
    onnx.save(model, str(bad))
    assert any("per-tensor" in p for p in trt_qdq.check_trt_qdq(bad))


def _residual_conv_onnx(path: Path, *, skip_feeds_conv: bool) -> None:
    """A ResNet-style block: Conv -> Add(conv, skip) -> Relu.

    ``skip_feeds_conv``: the skip is the block input, which also feeds the Conv (identity
    shortcut); otherwise the skip is a tensor no weighted op reads (x * 0.5).
    """
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.2, (4, 4, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    half = numpy_helper.from_array(np.array(0.5, np.float32), "half")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["x", "half"], ["m"], name="scale_skip"),
             helper.make_node("Add", ["c", "x" if skip_feeds_conv else "m"], ["s"],
                              name="residual_add"),
             helper.make_node("Relu", ["s"], ["y"], name="relu")]
    graph = helper.make_graph(
        nodes, "res",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [w, b, half])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))


@pytest.mark.parametrize("skip_feeds_conv", [True, False])
def test_residual_add_after_conv_has_qdq_on_the_skip_input_only(tmp_path, skip_feeds_conv):
    """TensorRT fuses Conv + residual Add when the skip input is quantized and the Conv side
    is not. An identity skip shares the Conv input's Q/DQ; any other skip gets its own."""
    src, dst = tmp_path / "res.onnx", tmp_path / "res-qdq.onnx"
    _residual_conv_onnx(src, skip_feeds_conv=skip_feeds_conv)
    rng = np.random.default_rng(1)
    data = CalibrationSet([{"x": rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32)}
                           for _ in range(40)], source="random")
    info = trt_qdq.make_qdq_onnx(src, dst, data, trt_qdq.QdqRecipe(), task="generic")
    assert info["residual_qdq"] == ([] if skip_feeds_conv else ["m"])
    graph, _, _, producers, _ = _graph(dst)
    add = next(n for n in graph.node if n.name == "residual_add")
    assert producers[add.input[0]].op_type == "Conv"  # the Conv side stays unquantized
    assert producers[add.input[1]].op_type == "DequantizeLinear"
    assert trt_qdq.check_trt_qdq(dst) == []
    ref, got = trt_qdq.run_onnx(src, data), trt_qdq.run_onnx(dst, data)
    assert fidelity(got, ref, task="generic")["cosine_mean"] > 0.999


# -- FP16 graph ------------------------------------------------------------------------------
def test_fp16_graph_keeps_fp32_io_and_matches(digits, digits_data, tmp_path):
    dst = tmp_path / "fp16.onnx"
    to_fp16_onnx(digits.onnx_artifact.path, dst)
    model = onnx.load(str(dst))
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT
               for v in [*model.graph.input, *model.graph.output])
    assert any(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer)
    _, evalset = digits_data
    ref = trt_qdq.run_onnx(digits.onnx_artifact.path, evalset)
    got = trt_qdq.run_onnx(dst, evalset)
    m = fidelity(got, ref, task="classification", labels=evalset.labels)
    assert m["cosine_mean"] > 0.9999 and m["top1_agreement"] == 1.0


# -- recipe: profiles --------------------------------------------------------------------------
MINILM_INPUTS = [TensorSpec("input_ids", "int64", ("batch", "seq")),
                 TensorSpec("attention_mask", "int64", ("batch", "seq"))]


def test_profiles_default_and_override():
    profiles, axes = make_profiles(MINILM_INPUTS, bench_dims={"seq": 128})
    assert axes == {"batch": [1, 8, 64], "seq": [1, 128, 256]}
    assert profiles["input_ids"] == {"min": [1, 1], "opt": [8, 128], "max": [64, 256]}
    assert profiles["attention_mask"] == profiles["input_ids"]
    profiles, axes = make_profiles(MINILM_INPUTS, overrides=parse_axes("batch=2:4:64,seq=16:64:512"))
    assert profiles["input_ids"] == {"min": [2, 16], "opt": [4, 64], "max": [64, 512]}
    image = [TensorSpec("image", "float32", ("batch", 1, 8, 8))]
    assert make_profiles(image)[0]["image"]["max"] == [64, 1, 8, 8]


@pytest.mark.parametrize("text", ["batch=1:8", "batch=8:4:32", "batch=a:b:c", "=1:2:3"])
def test_bad_profile_text_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--trt-profile"):
        parse_axes(text)


def test_profile_naming_an_unknown_axis_is_refused():
    with pytest.raises(UsageError, match="dynamic axes are \\['batch', 'seq'\\]"):
        make_profiles(MINILM_INPUTS, overrides={"height": (1, 2, 3)})


def test_feed_outside_the_profile_is_named():
    profiles, axes = make_profiles(MINILM_INPUTS, bench_dims={"seq": 128})
    recipe = Recipe("int8", "model.onnx", profiles, axes)
    assert check_in_profile(recipe, {"input_ids": (64, 256), "attention_mask": (64, 256)}) is None
    reason = check_in_profile(recipe, {"input_ids": (4, 300), "attention_mask": (4, 300)})
    assert "dimension 1 (seq) is 300" in reason and "[1, 256]" in reason
    assert "--trt-profile seq=" in reason


def test_recipe_round_trips_and_hash_tracks_content():
    profiles, axes = make_profiles(MINILM_INPUTS)
    recipe = Recipe("fp16", "model.onnx", profiles, axes)
    again = Recipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert again == recipe and again.sha256() == recipe.sha256()
    bigger = Recipe("fp16", "model.onnx", profiles, axes, workspace_mib=8192)
    assert bigger.sha256() != recipe.sha256()


# -- engine cache: key and the reuse-or-rebuild decision -------------------------------------
A100 = DeviceIdentity("NVIDIA A100-SXM4-80GB", "8.0", "10.13.3.9")


def test_engine_key_separates_gpu_capability_tensorrt_graph_and_recipe():
    base = A100.key("onnx1", "recipe1")
    assert base.startswith("nvidia-a100-sxm4-80gb-sm80-trt10.13.3.9-")
    others = {
        DeviceIdentity("NVIDIA L4", "8.9", "10.13.3.9").key("onnx1", "recipe1"),
        DeviceIdentity("NVIDIA A100-SXM4-80GB", "8.0", "11.0.0").key("onnx1", "recipe1"),
        A100.key("onnx2", "recipe1"),
        A100.key("onnx1", "recipe2"),
    }
    assert base not in others and len(others) == 4
    assert A100.key("onnx1", "recipe1") == base  # stable


def _cached(tmp_path: Path, device: DeviceIdentity = A100) -> tuple[Path, Path]:
    engine, record = engine_paths(tmp_path, device.key("onnx", "recipe"))
    write_engine(engine, record, b"\x00engine-bytes" * 10, {
        "gpu_name": device.gpu_name, "compute_capability": device.compute_capability,
        "tensorrt_version": device.tensorrt_version, "onnx_sha256": "onnx",
        "recipe_sha256": "recipe", "built_at": "2026-01-01T00:00:00+00:00"})
    return engine, record


def test_matching_engine_is_reused(tmp_path):
    engine, record = _cached(tmp_path)
    assert engine.parent.name == "engines"
    reuse, why = cache_decision(read_record(record), engine, device=A100, onnx_sha256="onnx",
                                recipe_sha256="recipe")
    assert reuse and "reusing" in why


@pytest.mark.parametrize("change, field", [
    ({"device": DeviceIdentity("NVIDIA L4", "8.0", "10.13.3.9")}, "gpu_name"),
    ({"device": DeviceIdentity("NVIDIA A100-SXM4-80GB", "9.0", "10.13.3.9")}, "compute_capability"),
    ({"device": DeviceIdentity("NVIDIA A100-SXM4-80GB", "8.0", "11.0.0")}, "tensorrt_version"),
    ({"onnx_sha256": "other"}, "onnx_sha256"),
    ({"recipe_sha256": "other"}, "recipe_sha256"),
])
def test_mismatched_engine_is_rebuilt_never_loaded(tmp_path, change, field):
    engine, record = _cached(tmp_path)
    kwargs = {"device": A100, "onnx_sha256": "onnx", "recipe_sha256": "recipe", **change}
    reuse, why = cache_decision(read_record(record), engine, **kwargs)
    assert not reuse and field in why


def test_tampered_or_missing_engine_is_rebuilt(tmp_path):
    engine, record = _cached(tmp_path)
    engine.write_bytes(engine.read_bytes()[:-3])
    reuse, why = cache_decision(read_record(record), engine, device=A100, onnx_sha256="onnx",
                                recipe_sha256="recipe")
    assert not reuse and "does not match its record" in why
    engine.unlink()
    assert cache_decision(read_record(record), engine, device=A100, onnx_sha256="onnx",
                          recipe_sha256="recipe")[0] is False
    record.write_text("{not json")
    assert read_record(record) is None


# -- bundle round trip (through the real pipeline) -----------------------------------------
@pytest.fixture(scope="module")
def trt_bundles(tmp_path_factory):
    out = tmp_path_factory.mktemp("trt-bundles")
    return modelport.export("builtin:digits-cnn", ["tensorrt:cuda:int8", "tensorrt:cuda:fp16"],
                            out=out, bench=None, progress=False)


def test_bundle_ships_qdq_onnx_and_recipe(trt_bundles, tmp_path):
    path = trt_bundles.bundles["tensorrt:cuda:int8"]
    bundle = open_bundle(path)
    build = bundle.manifest["build"]
    recipe = Recipe.from_dict(build["tensorrt"])
    assert recipe.precision == "int8" and recipe.strongly_typed and recipe.onnx == "model.onnx"
    assert recipe.axes == {"batch": [1, 8, 64]}
    assert trt_qdq.check_trt_qdq(path / recipe.onnx) == []
    assert build["layers_quantized"] == 4
    accuracy = bundle.manifest["accuracy"]
    assert accuracy["passed"] and "OnnxRuntimeSession" in accuracy["metrics"]["checked_with"]
    assert accuracy["metrics"]["accuracy_drop"] <= 0.01
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(bundle.manifest, json.loads(SCHEMA.read_text()))
    # the shipped graph reproduces the stored reference samples in ONNX Runtime
    feeds, refs = bundle.samples()
    got = trt_qdq.run_onnx(path / recipe.onnx, CalibrationSet.from_iterable([feeds]))
    assert (got["logits"].argmax(1) == refs["logits"].argmax(1)).mean() >= 0.97
    # a cached engine beside the bundle is outside the checksummed files: still a valid bundle
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    (copy / "engines").mkdir()
    (copy / "engines" / "x.engine").write_bytes(b"engine")
    assert open_bundle(copy).manifest["files"] == bundle.manifest["files"]


def test_fp16_bundle_records_graph_precision(trt_bundles):
    bundle = open_bundle(trt_bundles.bundles["tensorrt:cuda:fp16"])
    assert bundle.manifest["build"]["tensorrt"]["precision"] == "fp16"
    model = onnx.load(str(bundle.path / "model.onnx"))
    assert any(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer)
    assert bundle.manifest["accuracy"]["metrics"]["cosine_mean"] > 0.9999


# -- what a user sees on a machine without TensorRT / CUDA ----------------------------------
@pytest.mark.skipif(_here_has_tensorrt_gpu(), reason="this machine can run TensorRT")
def test_targets_says_build_only_and_why():
    proc = run_cli("targets", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["target"]: r for r in json.loads(proc.stdout)}
    for precision in ("fp32", "fp16", "int8"):
        row = rows[f"tensorrt:cuda:{precision}"]
        assert row["available"] == "build only"
        assert "no CUDA device" in row["why"] or "no 'tensorrt' module" in row["why"]
        assert 'pip install "modelport[tensorrt]"' in row["why"]
    assert rows["torch:cuda:fp16"]["available"] == "no"
    assert "CUDA" in rows["torch:cuda:fp16"]["why"]


@pytest.mark.skipif(_here_has_tensorrt_gpu(), reason="this machine can run TensorRT")
def test_run_and_build_say_why_not_here(trt_bundles, tmp_path):
    path = trt_bundles.bundles["tensorrt:cuda:int8"]
    np.savez(tmp_path / "in.npz", image=np.zeros((1, 1, 8, 8), np.float32))
    for args in (("run", str(path), "--input", str(tmp_path / "in.npz")), ("build", str(path))):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: cannot run tensorrt:cuda:int8 here: ")
        assert "Traceback" not in proc.stderr
    assert not (path / "engines").exists()


def test_build_refuses_a_bundle_that_needs_no_device_build(digits_bundles):
    proc = run_cli("build", str(digits_bundles.bundles["onnxruntime:cpu:fp32"]))
    assert proc.returncode == 2 and "only backends that build on the device (TensorRT)" in proc.stderr


@pytest.mark.skipif(_here_has_tensorrt_gpu(), reason="this machine can run TensorRT")
def test_cli_export_writes_the_bundle_and_says_where_the_engine_is_built(tmp_path):
    proc = run_cli("export", "builtin:digits-cnn", "--target", "tensorrt:cuda:fp32",
                   "--trt-profile", "batch=1:4:16", "--no-bench", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "the TensorRT engine will be built on the device" in proc.stderr
    assert "not run here" in proc.stdout
    manifest = json.loads((tmp_path / "tensorrt-cuda-fp32" / "manifest.json").read_text())
    assert manifest["build"]["tensorrt"]["axes"] == {"batch": [1, 4, 16]}
    assert manifest["build"]["tensorrt"]["tf32"] is False


def test_cli_bad_profile_exits_2_before_any_work(tmp_path):
    proc = run_cli("export", "builtin:digits-cnn", "--target", "tensorrt:cuda:fp32",
                   "--trt-profile", "batch=1:8", "--out", str(tmp_path))
    assert proc.returncode == 2 and "--trt-profile takes AXIS=MIN:OPT:MAX" in proc.stderr
    assert list(tmp_path.iterdir()) == []


# -- honesty fixes: output dtypes, one logger, the export-time engine kept -------------------
def test_engine_outputs_in_fp16_and_bf16_come_back_as_float32_numpy():
    import torch

    from modelport.backends.tensorrt.backend import host_array

    values = [[1.5, -2.25], [0.125, 3.0]]  # exact in fp16 and bf16
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        out = host_array(torch.tensor(values, dtype=dtype))
        assert out.dtype == np.float32, dtype
        np.testing.assert_array_equal(out, np.array(values, dtype=np.float32))
    ids = host_array(torch.tensor([[3, 4]], dtype=torch.int64))
    assert ids.dtype == np.int64  # integer outputs (token ids, labels) keep their type


def test_tensorrt_logger_is_made_in_one_place():
    """TensorRT keeps one global logger; a second trt.Logger per session or build warns and
    splits the log. Only engine.trt_logger (a lazy module singleton) may construct one."""
    import re

    folder = Path(modelport.__file__).parent / "backends" / "tensorrt"
    made = {p.name: len(re.findall(r"trt\.Logger\(", p.read_text())) for p in folder.glob("*.py")}
    assert sum(made.values()) == 1 and made["engine.py"] == 1, made
    source = (folder / "engine.py").read_text()
    assert "global _LOGGER" in source and "if _LOGGER is None" in source


@pytest.mark.skipif(not _here_has_tensorrt_gpu(), reason="needs tensorrt and a CUDA GPU")
def test_tensorrt_logger_is_one_per_process():
    from modelport.backends.tensorrt.engine import trt_logger

    assert trt_logger() is trt_logger()


def _export_time_engine(root: Path, device: DeviceIdentity, recipe: Recipe) -> str:
    key = device.key("a" * 64, recipe.sha256())
    engine, record = engine_paths(root, key)
    write_engine(engine, record, b"serialized engine bytes",
                 {"gpu_name": device.gpu_name, "compute_capability": device.compute_capability,
                  "tensorrt_version": device.tensorrt_version, "onnx_sha256": "a" * 64,
                  "recipe_sha256": recipe.sha256(), "key": key})
    return key


def test_engine_built_during_export_is_adopted_by_the_bundle(tmp_path):
    """Export builds the engine in a temporary folder; it waits in the host cache and the
    bundle's first load copies it, with its record, into <bundle>/engines/ instead of
    building it again."""
    from modelport.backends.tensorrt.engine import adopt_engine

    device = DeviceIdentity("NVIDIA H200", "9.0", "10.13.0")
    recipe = Recipe(precision="fp16", onnx="model.onnx",
                    profiles={"x": {"min": [1, 4], "opt": [8, 4], "max": [64, 4]}},
                    axes={"batch": [1, 8, 64]})
    # the manifest stores the recipe as JSON; the key computed on load must be the same
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))).sha256() == recipe.sha256()
    host, bundle = tmp_path / "host-cache", tmp_path / "bundle"
    key = _export_time_engine(host, device, recipe)
    facts = {"device": device, "onnx_sha256": "a" * 64, "recipe_sha256": recipe.sha256()}
    adopted = adopt_engine(host, bundle, key, **facts)
    assert adopted is not None
    engine, record = adopted
    assert engine == engine_paths(bundle, key)[0] and engine.read_bytes() == b"serialized engine bytes"
    assert record["adopted_from"].startswith(str(host)) and record["key"] == key
    reuse, why = cache_decision(read_record(engine_paths(bundle, key)[1]), engine, **facts)
    assert reuse, why
    # another GPU, another ONNX or a damaged engine is never adopted
    other = tmp_path / "other"
    assert adopt_engine(host, other, key, **{**facts, "device": DeviceIdentity(
        "NVIDIA A100", "8.0", "10.13.0")}) is None
    assert adopt_engine(host, other, key, **{**facts, "onnx_sha256": "b" * 64}) is None
    engine_paths(host, key)[0].write_bytes(b"truncated")
    assert adopt_engine(host, other, key, **facts) is None
    assert not (other / "engines").exists()
