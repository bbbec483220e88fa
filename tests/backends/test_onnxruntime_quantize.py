"""ONNX Runtime INT8 on the real eval splits, and the budget that catches a collapse."""

from __future__ import annotations

import numpy as np
import pytest

import modelport
from modelport.backends.base import BuildOptions
from modelport.backends.onnxruntime.backend import OnnxRuntimeBackend
from modelport.backends.onnxruntime.quantize import default_mode
from modelport.errors import AccuracyBudgetExceeded
from modelport.exporters.validate import torch_outputs
from modelport.metrics import Budget, budget_misses, fidelity, run_session
from modelport.specs import Target

INT8 = Target.parse("onnxruntime:cpu:int8")


def _int8_fidelity(model, data, tmp_path, options: BuildOptions | None = None):
    options = options or BuildOptions()
    calib, evalset = data
    backend = OnnxRuntimeBackend()
    artifact = backend.build(model, INT8, calib, tmp_path, options)
    with backend.load(artifact.main_path, target=INT8, inputs=model.onnx_artifact.inputs,
                      outputs=model.onnx_artifact.outputs) as session:
        got = run_session(session, evalset)
    ref = {k: np.concatenate([torch_outputs(model, b)[k] for b in evalset.batches(64)])
           for k in model.output_names}
    return artifact, fidelity(got, ref, task=model.task, labels=evalset.labels)


def test_default_int8_mode_is_chosen_from_the_graph(digits, minilm):
    assert default_mode(digits.onnx_artifact.path) == "static"  # conv net: static QDQ
    assert default_mode(minilm.onnx_artifact.path) == "dynamic"  # attention: dynamic MatMul


def test_digits_static_qdq_keeps_accuracy_on_heldout_digits(digits, digits_data, tmp_path):
    artifact, metrics = _int8_fidelity(digits, digits_data, tmp_path)
    assert artifact.info["mode"] == "static"
    assert artifact.info["calibration_samples"] == len(digits_data[0])
    assert metrics["reference_accuracy"] > 0.95  # the CNN really learned the digits
    assert metrics["accuracy_drop"] <= 0.01
    assert not budget_misses(metrics, Budget())


def test_minilm_int8_keeps_cosine_budget_on_real_sentences(minilm, minilm_data, tmp_path):
    artifact, metrics = _int8_fidelity(minilm, minilm_data, tmp_path)
    assert artifact.info["mode"] == "dynamic"
    assert metrics["samples"] == len(minilm_data[1]) > 300
    assert metrics["cosine_mean"] >= 0.99
    assert artifact.size_bytes < 0.7 * minilm.onnx_artifact.path.stat().st_size


#: static QDQ calibrated on these many calibration sentences: the collapse is the same with 32
#: as with all 490 (mean cosine ~0.35 either way), and the build is 4x shorter
COLLAPSE_CALIB = 32


def test_static_int8_collapse_on_minilm_is_refused_with_numbers(minilm, minilm_data, tmp_path):
    """The product's promise: a collapsed INT8 (static QDQ on attention) never ships."""
    calib, evalset = minilm_data
    with pytest.raises(AccuracyBudgetExceeded, match=r"mean cosine 0\.\d+ < 0\.99") as info:
        modelport.export(minilm, ["onnxruntime:cpu:int8"], out=tmp_path,
                         calib=calib.take(COLLAPSE_CALIB), eval=evalset,
                         options={"onnxruntime": {"int8_mode": "static"}}, bench=None,
                         progress=False)
    assert not (tmp_path / "onnxruntime-cpu-int8").exists()  # nothing shipped
    row = info.value.result.rows[1]
    assert row["status"] == "below budget" and row["fidelity"]["cosine_mean"] < 0.9
    assert row["fidelity"]["samples"] == len(evalset) > 300  # measured on the whole eval split
    assert "bundle" not in row and "no bundle written" in row["failure"]
