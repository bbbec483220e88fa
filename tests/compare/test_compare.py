"""`modelport compare`: same inputs through several artifacts; --per-layer finds the node.

The broken artifacts are real ONNX files with one weight tensor perturbed, run in ONNX Runtime.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from modelport.compare import compare
from tests.conftest import run_cli

pytestmark = pytest.mark.onnxruntime

PLANTED = "features.3.weight"  # the second conv of digits-cnn


def _perturbed(bundle: Path, out: Path, initializer: str = PLANTED, scale: float = 0.3) -> Path:
    """A copy of the bundle's model.onnx with one initializer perturbed by ``scale`` x its std."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(bundle / "model.onnx"))
    for i, init in enumerate(model.graph.initializer):
        if init.name == initializer:
            w = numpy_helper.to_array(init)
            noise = np.random.default_rng(0).normal(0, scale * w.std(), w.shape)
            model.graph.initializer[i].CopyFrom(
                numpy_helper.from_array((w + noise).astype(w.dtype), init.name))
            break
    else:
        raise AssertionError(f"{initializer} not in the graph")
    path = out / "broken.onnx"
    onnx.save(model, str(path))
    return path


def _consumer(onnx_path: Path, tensor: str) -> str:
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    return next(n.name for n in graph.node if tensor in n.input)


@pytest.fixture(scope="module")
def fp32(digits_bundles):
    return Path(digits_bundles.bundles["onnxruntime:cpu:fp32"])


@pytest.fixture(scope="module")
def int8(digits_bundles):
    return Path(digits_bundles.bundles["onnxruntime:cpu:int8"])


def test_correct_artifact_passes(fp32, tmp_path):
    copy = tmp_path / "same.onnx"
    shutil.copyfile(fp32 / "model.onnx", copy)
    report = compare([fp32, copy])
    assert report["passed"]
    logits = report["comparisons"][0]["outputs"]["logits"]
    assert logits["max_abs_err"] == 0.0 and logits["top1_agreement"] == 1.0
    assert report["inputs"]["samples"] == 64  # the bundle's stored samples
    # one bundle alone: against the torch outputs stored at build time
    alone = compare([fp32])
    assert alone["passed"] and alone["reference"].startswith("stored reference")
    assert alone["comparisons"][0]["outputs"]["logits"]["max_abs_err"] < 1e-4


def test_broken_artifact_is_flagged(fp32, tmp_path):
    broken = _perturbed(fp32, tmp_path)
    report = compare([fp32, broken])
    assert not report["passed"]
    logits = report["comparisons"][0]["outputs"]["logits"]
    assert logits["max_abs_err"] > 1e-2 and logits["mismatch_fraction"] > 0.5
    # the CLI prints the table, says FAIL and exits 1 (the table on stdout, the verdict on stderr)
    proc = run_cli("compare", str(fp32), str(broken))
    assert proc.returncode == 1, proc.stderr
    assert "FAIL" in proc.stdout and "max abs err" in proc.stdout
    assert "broken.onnx" in proc.stderr and "beyond rtol" in proc.stderr


def test_int8_passes_only_at_int8_tolerances(fp32, int8):
    strict = compare([fp32, int8])
    assert not strict["passed"]
    loose = compare([fp32, int8], atol=0.5, rtol=0.1)
    assert loose["passed"]
    assert loose["comparisons"][0]["outputs"]["logits"]["top1_agreement"] >= 0.95


def test_per_layer_finds_the_planted_error(fp32, tmp_path):
    broken = _perturbed(fp32, tmp_path)
    node = _consumer(broken, PLANTED)
    report = compare([fp32, broken], per_layer=True)
    layer = report["per_layer"]
    first = layer["first_jump"]
    assert first is not None and first["node"] == node
    assert first["op_type"] == "Conv"
    # everything before the planted node matches exactly
    before = layer["layers"][: [x["node"] for x in layer["layers"]].index(node)]
    assert before and all(x["rel_l2"] == 0.0 for x in before)
    # the torch module recorded by the dynamo exporter (BatchNorm folded into this Conv)
    assert first["torch_module"] and first["torch_module"].startswith("features.")
    assert node in [x["node"] for x in layer["largest_jumps"]]


def test_per_layer_fp32_vs_int8_qdq_via_cli(fp32, int8, tmp_path):
    out = tmp_path / "cmp.json"
    proc = run_cli("compare", str(fp32), str(int8), "--per-layer", "--atol", "0.5", "--rtol",
                   "0.1", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "error first jumps at node" in proc.stdout
    layer = json.loads(out.read_text())["per_layer"]
    # Q/DQ graph: Conv+Relu become one region; every conv block is compared
    assert layer["tensors_compared"] >= 5
    first = layer["first_jump"]
    assert first is not None and len(first["region"]) >= 1
    assert all(x["rel_l2"] < 0.1 for x in layer["layers"])  # INT8 stays close layer by layer


def test_bad_usage_is_one_line(fp32, tmp_path):
    proc = run_cli("compare", str(fp32), "--per-layer")
    assert proc.returncode == 2 and "--per-layer compares exactly two" in proc.stderr
    lone = tmp_path / "m.onnx"
    shutil.copyfile(fp32 / "model.onnx", lone)
    proc = run_cli("compare", str(lone), str(lone))
    assert proc.returncode == 2 and "pass --eval" in proc.stderr
    proc = run_cli("compare", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "not found" in proc.stderr
    assert "Traceback" not in proc.stderr
