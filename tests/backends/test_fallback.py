"""Sensitivity-ranked float fallback (backends/fallback.py) on ONNX Runtime and OpenVINO.

A tiny random-init CNN with depthwise convolutions and three tensors widened 100x in one
channel (tests/support/sensitive_cnn.py, entering as ``file.py:factory``) misses the budget in
plain INT8. What the recipe guarantees, checked here independently of the search: the layers
it keeps float meet the budget on the probe slice of the calibration data, and the set is
minimal (each one quantized again misses it) -- both against the budget the search aims at,
a little inside the target's -- the manifest lists them, and 0 turns it off.
No assertion depends on which layers one CPU's kernels make the worst.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelport.backends import fallback
from modelport.backends.base import BuildOptions
from modelport.backends.fallback import Unit
from modelport.calibration_data import CalibrationSet
from modelport.metrics import Budget, budget_misses, fidelity
from modelport.registry import get_backend
from modelport.specs import Target

FACTORY = Path(__file__).resolve().parents[1] / "support" / "sensitive_cnn.py"
BUDGET = Budget()
#: what the search aims at on the probe (a little inside the budget: the probe is calibration
#: data, the evaluation split judges): what it guarantees is stated against this
AIM = fallback.with_headroom(BUDGET)
#: calibration samples: the probe (fallback.PROBE_SAMPLES) is the first of them
CALIB = 64


def _options(backend: str, extra: dict) -> BuildOptions:
    """The fallback on its own: the CNN recipe (graph_prep) would equalize the widened channels
    away before there was anything to fall back from."""
    return BuildOptions(budget=BUDGET, backends={backend: extra}, cnn_recipe="off")


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    from modelport.exporters import export_validated
    from modelport.models import resolve_model

    model = resolve_model(f"{FACTORY}:make")
    model.onnx_artifact = export_validated(model, tmp_path_factory.mktemp("sensitive-cnn")
                                           / "model.onnx")
    rng = np.random.default_rng(0)
    calib = CalibrationSet([{"image": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
                            for _ in range(CALIB)], source="random images")
    probe = calib.take(fallback.PROBE_SAMPLES)
    reference = _ort_outputs(model.onnx_artifact.path, probe)
    return model, calib, probe, reference


def _ort_outputs(path: Path, data) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outs = [session.run(names, feeds) for feeds in data.batches(16)]
    return {n: np.concatenate([o[i] for o in outs]) for i, n in enumerate(names)}


def _build(cnn, target: str, extra: dict, tmp: Path):
    model, calib, _, _ = cnn
    tgt = Target.parse(target)
    backend = get_backend(tgt.runtime)()
    return backend.build(model, tgt, calib, tmp, _options(tgt.runtime, extra)).info


def _kept(info) -> list[str]:
    return [u["name"] for u in info["float_fallback"]["kept_float"]]


def _assert_record(record) -> None:
    """What the manifest says: the search was needed and met the budget, its layers with their
    ranks and sensitivities, and the metric before and after."""
    assert record["needed"] and record["met"], record
    assert 0 < len(record["kept_float"]) <= fallback.DEFAULT_MAX_FALLBACK
    assert budget_misses(record["metric_before"], AIM)
    assert not budget_misses(record["metric_after"], AIM)
    assert record["aimed_at"]["min_cosine"] == pytest.approx(AIM.min_cosine)
    assert record["metric_after"]["samples"] == fallback.PROBE_SAMPLES
    for layer in record["kept_float"]:
        assert layer["rank"] >= 1 and layer["sensitivity"] > 0 and layer["nodes"]
    ranks = [u["rank"] for u in record["ranking"]]
    assert ranks == sorted(ranks) and record["ranking"][0]["sensitivity"] >= \
        record["ranking"][-1]["sensitivity"]
    json.dumps(record)  # goes into the manifest as is


# -- the search on a known answer (no runtime) -------------------------------------------------
def test_search_finds_the_fewest_even_when_the_ranking_is_not_monotone():
    """Met iff A and C are float; the ranking puts B (useless) between them."""
    ranking = [Unit(n, (n,)) for n in "ABCDEFGHIJ"]
    calls = []

    def evaluate(units):
        names = {u.name for u in units}
        calls.append(names)
        return {"cosine_mean": 1.0 - 0.05 * len({"A", "C"} - names), "cosine_min": 0.9}

    record = fallback.find_fewest(ranking, evaluate, BUDGET, 8, before=evaluate([]),
                                  ranked_by="test", probe="test")
    assert {u["name"] for u in record["kept_float"]} == {"A", "C"} and record["met"]
    assert len(calls) - 1 <= 1 + 3 + 2 * 3  # all 8, binary search, pruning (+ the rebuild)
    assert calls[-1] == {"A", "C"}  # the backend's file holds the answer


def test_search_says_when_even_the_most_float_layers_miss():
    ranking = [Unit(n, (n,)) for n in "ABC"]

    def evaluate(units):
        return {"cosine_mean": 0.5, "cosine_min": 0.5}

    record = fallback.find_fewest(ranking, evaluate, BUDGET, 2, before=evaluate([]),
                                  ranked_by="test", probe="test")
    # nothing closer to the float graph than none: the fewest (none) are kept
    assert not record["met"] and record["kept_float"] == []


def test_when_none_meets_the_best_measured_prefix_is_kept_not_the_most():
    """More float layers are not always closer (a float layer also loses what the quantized
    ones around it absorbed): A float helps, B float hurts; the search keeps A alone."""
    ranking = [Unit(n, (n,)) for n in "ABCD"]
    calls = []

    def evaluate(units):
        names = {u.name for u in units}
        calls.append(names)
        agreement = 0.9 + 0.05 * ("A" in names) - 0.08 * ("B" in names)
        return {"cosine_mean": 0.95, "cosine_min": 0.9, "top1_agreement": agreement,
                "samples": 1000}

    record = fallback.find_fewest(ranking, evaluate, BUDGET, 4, before=evaluate([]),
                                  ranked_by="test", probe="test", every_prefix=4)
    assert not record["met"] and [u["name"] for u in record["kept_float"]] == ["A"]
    assert record["metric_after"]["top1_agreement"] == pytest.approx(0.95)
    assert calls[-1] == {"A"}  # the backend's file holds the build kept


def test_closest_weighs_decisions_beyond_noise_then_cosine():
    def m(agreement, cosine, n=64):
        return {"top1_agreement": agreement, "cosine_mean": cosine, "samples": n}

    # one or two of 64 decisions apart: within noise, the better cosine wins
    assert fallback.closest([m(60 / 64, 0.9960), m(59 / 64, 0.9981)]) == 1
    # 40 of 1000 vs 10 of 1000: beyond noise, decisions win over cosine
    assert fallback.closest([m(0.96, 0.999, 1000), m(0.99, 0.99, 1000)]) == 1
    assert fallback.closest([m(1.0, 0.99), m(1.0, 0.99)]) == 0  # the first on ties


def test_no_ranking_is_spent_when_even_every_layer_float_misses():
    calls = []

    def evaluate(units):
        calls.append(len(units))
        return {"cosine_mean": 0.5, "cosine_min": 0.5}

    units = [Unit(n, (n,)) for n in "ABCDEFGHIJKL"]
    record = fallback.out_of_reach(units, evaluate, BUDGET, evaluate([]), 8, "test")
    assert calls == [0, 12] and not record["met"] and record["kept_float"] == []
    assert "still misses" in record["why"]
    assert fallback.out_of_reach(units, lambda u: {"cosine_mean": 1.0, "cosine_min": 1.0},
                                 BUDGET, {}, 8, "test") is None


# -- ONNX Runtime static QDQ: nodes_to_exclude -------------------------------------------------
def _ort_probe_misses(cnn, exclude: list[str], tmp: Path) -> list[str]:
    """Independent re-check: ORT INT8 with these nodes float and the fallback off, measured on
    the probe slice against the float graph."""
    _, _, probe, reference = cnn
    tmp.mkdir(parents=True)
    _build(cnn, "onnxruntime:cpu:int8", {"nodes_to_exclude": tuple(exclude) or None,
                                         "max_fallback": 0}, tmp)
    got = _ort_outputs(tmp / "model.onnx", probe)
    return budget_misses(fidelity(got, reference, task="generic"), AIM)


@pytest.fixture(scope="module")
def ort_info(cnn, tmp_path_factory):
    return _build(cnn, "onnxruntime:cpu:int8", {}, tmp_path_factory.mktemp("ort-fallback"))


def test_onnxruntime_keeps_a_minimal_float_set_that_meets_the_budget(cnn, ort_info, tmp_path):
    record = ort_info["float_fallback"]
    _assert_record(record)
    kept = _kept(ort_info)
    assert set(ort_info["nodes_excluded"]) == set(kept)
    assert not _ort_probe_misses(cnn, kept, tmp_path / "all")
    for i, name in enumerate(kept):  # minimal: quantizing any one of them again misses
        assert _ort_probe_misses(cnn, [n for n in kept if n != name], tmp_path / str(i)), name
    # the layers kept float are the ones next to the widened tensors
    modules = {u.get("module") for u in record["kept_float"]}
    assert modules & {"block1.expand", "block1.depthwise", "block2.expand"}, modules


def test_onnxruntime_zero_turns_it_off(cnn, tmp_path):
    info = _build(cnn, "onnxruntime:cpu:int8", {"max_fallback": 0}, tmp_path)
    assert "float_fallback" not in info and info["nodes_excluded"] == []


# -- OpenVINO: NNCF ignored_scope --------------------------------------------------------------
def _ov_probe_misses(cnn, ignored: list[str]) -> list[str]:
    """Independent re-check: NNCF with these layers ignored (the build's settings), measured on
    the probe slice against the float graph."""
    import nncf
    import openvino as ov

    from modelport.backends.openvino.quantize import _nncf_kwargs

    model, calib, probe, reference = cnn
    float_model = ov.convert_model(str(model.onnx_artifact.path))
    kwargs = _nncf_kwargs("default", None, "CPU", subset_size=len(calib))
    quantized = nncf.quantize(float_model, nncf.Dataset(calib), **kwargs,
                              ignored_scope=nncf.IgnoredScope(names=ignored, validate=False))
    compiled = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = np.concatenate([compiled(feeds)[0] for feeds in probe])
    return budget_misses(fidelity({"output": got}, reference, task="generic"), AIM)


@pytest.fixture(scope="module")
def ov_info(cnn, tmp_path_factory):
    # int8_scope all: NNCF's activations too on every CPU kind (the no-VNNI recipe is weights-only)
    return _build(cnn, "openvino:cpu:int8", {"int8_scope": "all"},
                  tmp_path_factory.mktemp("ov-fallback"))


@pytest.mark.slow  # one NNCF run per trial and per re-check: ~60 s on 2 busy cores
def test_openvino_keeps_a_minimal_float_set_that_meets_the_budget(cnn, ov_info):
    _assert_record(ov_info["float_fallback"])
    kept = _kept(ov_info)
    assert "accuracy_control" not in ov_info  # the search replaces NNCF's accuracy control
    assert not _ov_probe_misses(cnn, kept)
    for name in kept:
        assert _ov_probe_misses(cnn, [n for n in kept if n != name]), name


def test_openvino_zero_turns_it_off(cnn, tmp_path):
    info = _build(cnn, "openvino:cpu:int8", {"int8_scope": "all", "max_fallback": 0}, tmp_path)
    assert "float_fallback" not in info


# -- the manifest, through the real export -----------------------------------------------------
def test_manifest_lists_the_float_layers(cnn, tmp_path):
    import modelport
    from modelport.bundle import open_bundle

    _, calib, _, _ = cnn
    rng = np.random.default_rng(1)
    evalset = CalibrationSet([{"image": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
                              for _ in range(32)], source="other random images")
    result = modelport.export(f"{FACTORY}:make", ["onnxruntime:cpu:int8"], out=tmp_path / "out",
                              calib=calib, eval=evalset, bench=None, progress=False,
                              allow_accuracy_drop=True, options=BuildOptions(cnn_recipe="off"))
    build = open_bundle(result.bundles["onnxruntime:cpu:int8"]).manifest["build"]
    _assert_record(build["float_fallback"])
    assert {n for u in build["float_fallback"]["kept_float"] for n in u["nodes"]} \
        == set(build["nodes_excluded"])


# -- TFLite: selective quantization (denylisted_nodes); 16x8 only within budget and faster ------
@pytest.fixture(scope="module")
def tflite_build(cnn, tmp_path_factory):
    pytest.importorskip("onnx2tf")
    tmp = tmp_path_factory.mktemp("tflite-fallback")
    return _build(cnn, "tflite:cpu:int8", {}, tmp), tmp / "model.tflite"


def _tflite_probe_misses(cnn, denylisted: list[str], path: Path) -> list[str]:
    """Independent re-check: TensorFlow's own selective quantization (a fresh
    QuantizationDebugger, calibrated on the same data) with these layers float, measured on the
    probe slice against the float graph."""
    import tensorflow as tf

    from modelport.backends.tflite import convert
    from modelport.backends.tflite.int16_retry import fidelity_of

    model, calib, probe, reference = cnn
    key = convert._content_key(Path(model.onnx_artifact.path))
    graph = next(g for k, g in convert._GRAPHS.items() if k[0] == key)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(graph.saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([f["image"]] for f in calib.samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                           tf.lite.OpsSet.TFLITE_BUILTINS]
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ([f["image"]] for f in probe.samples),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylisted))
    path.write_bytes(debugger.get_nondebug_quantized_model())
    specs = [s for s in model.onnx_artifact.inputs]
    feeds = list(probe.batches(1))
    outs = fidelity_of(path, specs, model.onnx_artifact.outputs, feeds,
                       [[reference["output"][i:i + 1]] for i in range(len(feeds))], "generic")
    return budget_misses(outs, AIM)


@pytest.mark.slow  # one onnx2tf conversion, one calibration per layer re-checked
def test_tflite_keeps_a_minimal_float_set_that_meets_the_budget(cnn, tflite_build, tmp_path):
    info, _ = tflite_build
    record = info["float_fallback"]
    _assert_record(record)
    assert info["int8_budget_retry"]["chosen"] == "float fallback"
    kept = _kept(info)
    assert f"{len(kept)} layer(s) kept float" in info["quantization"]
    assert not _tflite_probe_misses(cnn, kept, tmp_path / "all.tflite")
    for i, name in enumerate(kept):  # minimal: quantizing any one of them again misses
        rest = [n for n in kept if n != name]
        assert _tflite_probe_misses(cnn, rest, tmp_path / f"{i}.tflite"), name


@pytest.mark.slow  # a second TFLite INT8 build (the onnx2tf graph is reused)
def test_tflite_int8_that_misses_is_refused_with_both_numbers(cnn, tflite_build, tmp_path):
    """With the float fallback off (``--tflite-max-fallback 0``: every op int8)."""
    from modelport.backends.tflite.backend import TFLiteBackend

    model, calib, _, _ = cnn
    backend = TFLiteBackend()
    target = Target.parse("tflite:cpu:int8")
    info = backend.build(model, target, calib, tmp_path,
                         _options("tflite", {"max_fallback": 0})).info
    assert "float_fallback" not in info
    retry = info["int8_budget_retry"]
    assert retry["needed"] and budget_misses(retry["full_integer"] | {"cosine_min": 0}, BUDGET)
    if retry["chosen"] == "16x8":  # only where it meets the budget and beats FP32 here
        assert not budget_misses(retry["16x8"] | {"cosine_min": 0}, BUDGET)
        assert retry["speed_ms_p50"]["16x8"] < retry["speed_ms_p50"]["fp32"]
        assert info["int8_mode"] == "16x8"
        return
    # refused: the full-integer file stays for the export to judge, and its refusal says why
    assert info["int8_mode"] == "full-integer" and "int8_refusal_note" in info
    note = info["int8_refusal_note"]
    assert f"{retry['full_integer']['cosine_mean']:.4f}" in note and "16x8" in note
    assert f"{retry['16x8']['cosine_mean']:.4f}" in note or "did not convert" in note
    assert note in backend.budget_hint
