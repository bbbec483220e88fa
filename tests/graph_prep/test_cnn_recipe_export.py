"""End to end: the widened-range CNN through `modelport export` to ONNX Runtime and OpenVINO
INT8, with the CNN recipe (default) and without; the manifest records the steps."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.graph_prep.conftest import HERE

TARGETS = ["onnxruntime:cpu:int8", "openvino:cpu:int8"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    import modelport
    from modelport.backends.base import BuildOptions

    tmp = tmp_path_factory.mktemp("cnn-recipe")
    rng = np.random.default_rng(0)
    np.save(tmp / "x.npy", rng.standard_normal((128, 3, 16, 16)).astype(np.float32))
    np.save(tmp / "eval.npy", rng.standard_normal((64, 3, 16, 16)).astype(np.float32))
    out = {}
    for recipe in ("auto", "off"):
        result = modelport.export(f"{HERE / 'widened_cnn.py'}:make", TARGETS,
                                  out=tmp / recipe, calib=tmp / "x.npy", eval=tmp / "eval.npy",
                                  bench=None, progress=False, allow_accuracy_drop=True,
                                  options=BuildOptions(cnn_recipe=recipe))
        out[recipe] = ({r["target"]: r for r in result.rows}, result.bundles)
    return out


@pytest.mark.slow
@pytest.mark.onnxruntime
@pytest.mark.openvino
@pytest.mark.parametrize("target", TARGETS)
def test_recipe_beats_plain_int8_on_widened_ranges(exports, target):
    with_recipe = exports["auto"][0][target]["fidelity"]
    without = exports["off"][0][target]["fidelity"]
    # equalization removes the 100x channel outliers from per-tensor activations and the next
    # layer's weights: the INT8 error (1 - cosine) must drop by at least 4x (measured: 60-600x)
    assert 1 - with_recipe["cosine_mean"] < (1 - without["cosine_mean"]) / 4
    assert with_recipe["cosine_min"] > 0.999
    assert with_recipe["top1_agreement"] >= without["top1_agreement"]


@pytest.mark.slow
@pytest.mark.onnxruntime
@pytest.mark.openvino
def test_manifest_records_each_step_with_its_fp32_metric(exports):
    for target in TARGETS:
        bundle = exports["auto"][1][target]
        prep = json.loads((bundle / "manifest.json").read_text())["build"]["graph_prep"]
        assert prep["applied"] and prep["recipe"] == "auto"
        names = [s["name"] for s in prep["steps"]]
        assert names[:2] == ["bn-fold", "equalize"]
        equalize = prep["steps"][1]
        assert equalize["changed"]["pairs"] == 4
        assert equalize["fp32_vs_original"]["cosine_min"] > 0.99999  # exact with ReLU
        off = json.loads((exports["off"][1][target] / "manifest.json").read_text())
        assert off["build"]["graph_prep"]["applied"] is False


def test_a_bad_cnn_recipe_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "modelport", "export", "builtin:digits-cnn", "-t",
         "onnxruntime:cpu:int8", "--cnn-recipe", "bn-fold,equalise", "--out", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "did you mean 'equalize'" in proc.stderr
    assert not any(tmp_path.iterdir())
