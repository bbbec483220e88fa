"""TFLite INT8 for transformers: dynamic-range and 16x8 MiniLM bundles, each within the cosine
budget or refused with its numbers, sharing one onnx2tf conversion (seq 64, 16 calibration and
32 evaluation sentences, no benchmark: fidelity only). The model is the session's validated
MiniLM ONNX (reference: ONNX Runtime FP32), so the two exports add no torch export."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.tflite, pytest.mark.slow]

SHAPES = {"input_ids": (1, 64), "attention_mask": (1, 64)}


@pytest.fixture(scope="module")
def minilm_modes(tmp_path_factory, minilm, minilm_data):
    import modelport
    from modelport.backends.tflite import convert
    from modelport.errors import AccuracyBudgetExceeded, BuildError

    calib, evalset = minilm_data
    calib, evalset = calib.take(min(16, len(calib))), evalset.take(min(32, len(evalset)))
    before = convert.CONVERSIONS
    out = {}
    for mode in ("dynamic-range", "16x8"):
        dest = tmp_path_factory.mktemp("tfl-modes") / mode
        options = {"tflite": {"int8_mode": mode, "shapes": SHAPES, "calib_samples": 16}}
        try:
            result = modelport.export(str(minilm.onnx_artifact.path), ["tflite:cpu:int8"],
                                      out=dest, calib=calib, eval=evalset, bench=None, progress=False,
                                      options=options)
            error = None
        except (AccuracyBudgetExceeded, BuildError) as exc:
            result, error = getattr(exc, "result", None), exc
        out[mode] = (result, error)
    return out, convert.CONVERSIONS - before


@pytest.mark.parametrize("mode", ["dynamic-range", "16x8"])
def test_mode_gives_a_bundle_within_budget_or_a_refusal_with_numbers(minilm_modes, mode):
    """A bundle within budget; or the budget's refusal with the cosine; or the converter's
    refusal naming the mode (16x8 on TensorFlow 2.21: int64 token inputs get no calibrated
    range, 'Empty min/max for tensor serving_default_input_ids')."""
    from modelport.errors import BuildError

    (results, _) = minilm_modes
    result, error = results[mode]
    if isinstance(error, BuildError):
        assert f"in {mode} mode" in str(error) and "--tflite-int8-mode" in str(error)
        return
    row = next(r for r in result.rows if r["target"] == "tflite:cpu:int8")
    cosine = row["fidelity"]["cosine_mean"]
    if error is None:
        assert row["status"] == "ok" and cosine >= 0.99
        manifest = json.loads((result.bundles["tflite:cpu:int8"] / "manifest.json").read_text())
        build = manifest["build"]
        assert build["int8_mode"] == mode and build["int8_mode_chosen_by"] == "--tflite-int8-mode"
        assert build["shapes"]["input_ids"] == [1, 64]
    else:
        assert "tflite:cpu:int8" not in result.bundles
        assert f"{cosine:.4f}" in str(error) and "mean cosine" in str(error)


def test_dynamic_range_keeps_minilm(minilm_modes):
    """The form that works for transformers here (full-integer falls to cosine 0.31)."""
    (results, _) = minilm_modes
    assert results["dynamic-range"][1] is None, str(results["dynamic-range"][1])


def test_modes_share_one_conversion(minilm_modes):
    assert minilm_modes[1] <= 1
