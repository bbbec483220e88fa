"""Cross-layer equalization: exact with ReLU, balanced ranges, ReLU6 handled and recorded."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from modelport.graph_prep import run
from modelport.graph_prep.equalize import find_pairs, input_channel_ranges
from modelport.graph_prep.graph import GraphView, attr
from modelport.graph_prep.recipe import run_steps

pytestmark = pytest.mark.onnxruntime


def _relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def _worst_range_ratio(path) -> float:
    """Largest / smallest per-input-channel |weight| range of each pair's second conv: what
    per-channel weight scales cannot absorb."""
    view = GraphView(onnx.load(str(path)))
    ratios = []
    for pair in find_pairs(view):
        r = input_channel_ranges(view.value(pair.second.input[1]), int(attr(pair.second, "group", 1)))
        ratios.append(r.max() / r.min())
    return float(max(ratios))


def test_equalization_keeps_the_relu_function_and_balances_ranges(relu_cnn, calib_samples,
                                                                   held_out, tmp_path):
    path, steps = run_steps(relu_cnn, calib_samples, tmp_path, ["bn-fold", "equalize"])
    changed = steps[-1]["changed"]
    assert changed["pairs"] == 4  # conv->dw, dw->pw, pw->dw, dw->pw, depthwise pairs included
    ref = run.outputs(onnx.load(str(relu_cnn)), held_out)[0]
    got = run.outputs(onnx.load(str(path)), held_out)[0]
    assert _relative_error(got, ref) < 1e-4  # positive scaling commutes with ReLU: exact
    before, after = _worst_range_ratio(relu_cnn), _worst_range_ratio(path)
    assert before > 50  # the widened channels: 100x apart
    assert after < before / 10
    assert changed["range_ratio_after"] == pytest.approx(after, rel=1e-2)


def test_relu6_kept_where_exact_or_replaced_and_recorded(relu6_cnn, calib_samples, held_out,
                                                         tmp_path):
    ref = run.outputs(onnx.load(str(relu6_cnn)), held_out)[0]
    kept, steps = run_steps(relu6_cnn, calib_samples, tmp_path / "keep", ["equalize"])
    record = steps[0]["changed"]
    assert record["relu6"] == "keep" and record["relu6_replaced_by_relu"] == 0
    # channels whose clip fired on the calibration data keep scale 1 (the widened ones)
    assert record["clip_channels_held_at_scale_1"] > 0
    assert record["channels_scaled"] > 0
    assert _relative_error(run.outputs(onnx.load(str(kept)), held_out)[0], ref) < 1e-4
    assert steps[0]["fp32_vs_original"]["cosine_min"] > 0.99999

    relu, steps = run_steps(relu6_cnn, calib_samples, tmp_path / "relu",
                            ["equalize", "relu6-to-relu"])
    record = steps[0]["changed"]
    assert record["relu6"] == "relu" and record["relu6_replaced_by_relu"] == 4
    assert record["clip_channels_held_at_scale_1"] == 0
    assert record["range_ratio_after"] < 5  # every channel equalized
    graph = onnx.load(str(relu)).graph
    assert sum(n.op_type == "Clip" for n in graph.node) == 1  # the last one has no next conv
    # the float function changed where ReLU6 clipped; the record says by how much
    metric = steps[0]["fp32_vs_original"]
    got = run.outputs(onnx.load(str(relu)), calib_samples)[0]
    ref_calib = run.outputs(onnx.load(str(relu6_cnn)), calib_samples)[0]
    assert metric["max_abs_err"] == pytest.approx(float(np.abs(got - ref_calib).max()), rel=1e-3)
    assert metric["cosine_min"] < 1.0 and "top1_agreement" in metric
