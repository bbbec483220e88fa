"""TFLite for MiniLM: FP32 parity with torch, the default INT8 and its budget, and the
dynamic-range and 16x8 INT8 modes, each within the cosine budget or refused with its numbers.

Every MiniLM here is converted at sequence length 64 (``--shape input_ids=1x64``): every
evaluation sentence fits in 64 tokens, so the checks are the same as at the default 128 (which
test_tflite.py::test_static_shapes_from_options pins) at half the interpreter and calibration
work. The builtin:minilm export comes from the export cache, so its ONNX is the session's
validated MiniLM ONNX, and the one onnx2tf conversion is shared by every build in this module
(the conversion cache is keyed on the ONNX content and the static shapes).
"""

from __future__ import annotations

import json

import pytest

from tests.support.exports import export_or_refusal, rows_by_target

pytestmark = [pytest.mark.tflite, pytest.mark.slow]

#: FP32 .tflite vs the torch reference (max abs error on every evaluation sample)
FP32_ATOL = 1e-4
#: MiniLM's static sequence length here: the longest evaluation sentence is 62 tokens
MINILM_SEQ = 64


@pytest.fixture(scope="session")
def tfl_minilm(tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite") / "minilm"
    return export_or_refusal("builtin:minilm", ["tflite:cpu:fp32", "tflite:cpu:int8"], out,
                   options={"tflite": {"shapes": {"input_ids": (1, MINILM_SEQ)}}})



# -- the default targets: FP32 parity, INT8 budget ----------------------------------------
def test_minilm_fp32_matches_torch(tfl_minilm, minilm_data):
    result, _ = tfl_minilm
    row = rows_by_target(result)["tflite:cpu:fp32"]
    assert row["status"] == "ok"
    assert row["fidelity"]["max_abs_err"] < FP32_ATOL, row["fidelity"]
    manifest = json.loads((result.bundles["tflite:cpu:fp32"] / "manifest.json").read_text())
    assert manifest["build"]["conversion_path"] == "onnx2tf"
    assert manifest["build"]["static_shapes"] is True
    # static shapes: batch 1, seq from --shape (the mask shares the axis); names kept from the
    # ONNX; every evaluation sentence fits, so nothing was truncated
    assert {i["name"]: i["shape"] for i in manifest["inputs"]} == {
        "input_ids": [1, MINILM_SEQ], "attention_mask": [1, MINILM_SEQ]}
    _, evalset = minilm_data
    assert max(s["input_ids"].shape[1] for s in evalset) <= MINILM_SEQ
    assert row["fidelity"]["samples"] == len(evalset)
    assert manifest["outputs"][0]["name"] == "sentence_embedding"


def test_minilm_int8_budget_is_enforced(tfl_minilm):
    """Full-integer MiniLM either keeps cosine >= 0.99 or is refused with the measured figures."""
    result, error = tfl_minilm
    row = rows_by_target(result)["tflite:cpu:int8"]
    cosine = row["fidelity"]["cosine_mean"]
    if cosine >= 0.99:
        assert error is None and "tflite:cpu:int8" in result.bundles
    else:
        from modelport.errors import AccuracyBudgetExceeded

        assert isinstance(error, AccuracyBudgetExceeded)
        assert "tflite:cpu:int8 misses its accuracy budget" in str(error)
        assert f"mean cosine {cosine:.4f} < 0.99" in str(error)  # the measured figure
        assert "tflite:cpu:int8" not in result.bundles
        assert row["status"] == "below budget"



# -- the INT8 modes ------------------------------------------------------------------------
SHAPES = {"input_ids": (1, 64), "attention_mask": (1, 64)}


@pytest.fixture(scope="module")
def minilm_modes(tmp_path_factory, minilm, minilm_data, tfl_minilm):
    """After tfl_minilm (so the conversion it made is there to share)."""
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
    """Same ONNX bytes (the export cache's graph, or the same file given) and the same static
    shapes: the modes reuse the conversion the default targets made."""
    from modelport.exporters.export_cache import cache_dir

    assert minilm_modes[1] == (0 if cache_dir() is not None else 1)
