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
    """Over pairs, the largest / smallest per-channel |weight| range of the first conv's output
    channels and of the second conv's input channels (what per-tensor activations and
    per-channel weight scales cannot absorb)."""
    view = GraphView(onnx.load(str(path)))
    ratios = []
    for pair in find_pairs(view):
        w1 = view.value(pair.first.input[1])
        r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
        r2 = input_channel_ranges(view.value(pair.second.input[1]),
                                  int(attr(pair.second, "group", 1)))
        ratios += [r1.max() / r1.min(), r2.max() / r2.min()]
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


def test_relu6_pairs_left_alone_or_replaced_by_relu_and_recorded(relu6_cnn, calib_samples,
                                                                  held_out, tmp_path):
    ref = run.outputs(onnx.load(str(relu6_cnn)), held_out)[0]
    kept, steps = run_steps(relu6_cnn, calib_samples, tmp_path / "keep", ["equalize"])
    record = steps[0]["changed"]
    # keep: ReLU6 between convs is not positively homogeneous, so those pairs are left alone
    # and the float function is exact on any input
    assert record["relu6"] == "keep" and record["relu6_pairs_left_alone"] == 4
    assert record["pairs"] == 0 and record["relu6_replaced_by_relu"] == 0
    assert _relative_error(run.outputs(onnx.load(str(kept)), held_out)[0], ref) < 1e-6

    relu, steps = run_steps(relu6_cnn, calib_samples, tmp_path / "relu",
                            ["equalize", "relu6-to-relu"])
    record = steps[0]["changed"]
    assert record["relu6"] == "relu" and record["relu6_replaced_by_relu"] == 4
    assert record["pairs"] == 4 and record["channels_scaled"] > 0
    graph = onnx.load(str(relu)).graph
    assert sum(n.op_type == "Clip" for n in graph.node) == 1  # the last one has no next conv
    # the float function changed where ReLU6 clipped; the record says by how much
    metric = steps[0]["fp32_vs_original"]
    checks = calib_samples[:32]  # recipe.METRIC_SAMPLES
    got = run.outputs(onnx.load(str(relu)), checks)[0]
    ref_calib = run.outputs(onnx.load(str(relu6_cnn)), checks)[0]
    assert metric["max_abs_err"] == pytest.approx(float(np.abs(got - ref_calib).max()), rel=1e-3)
    assert metric["cosine_min"] < 1.0 and "top1_agreement" in metric


def test_grouped_pair_is_equalized_exactly():
    """A Conv -> ReLU -> grouped Conv (2 groups): each input channel's factor lands on the
    weights of its own group only; the float function stays."""
    from onnx import TensorProto, helper, numpy_helper

    from modelport.graph_prep.equalize import equalize

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 3, 3, 3)) * np.repeat([[100.0], [1.0]], 4, 0)[:, :, None, None]
    w2 = rng.standard_normal((6, 4, 3, 3))
    inits = [numpy_helper.from_array(v.astype(np.float32), n) for n, v in
             (("w1", w1), ("b1", rng.standard_normal(8)), ("w2", w2))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="a", pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="b", group=2, pads=[1] * 4)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    samples = [{"x": rng.standard_normal((2, 3, 6, 6)).astype(np.float32)} for _ in range(3)]
    ref = run.outputs(model, samples)[0]
    record = equalize(model, samples)
    # both ranges become sqrt(r1 * r2): a 100x spread drops to about its square root
    assert record["pairs"] == 1 and record["range_ratio_after"] < record["range_ratio_before"] / 5
    assert _relative_error(run.outputs(model, samples)[0], ref) < 1e-5


def test_activation_criterion_keeps_the_relu_function(relu_cnn, calib_samples, held_out):
    from modelport.graph_prep.equalize import equalize

    model = onnx.load(str(relu_cnn))
    ref = run.outputs(model, held_out)[0]
    record = equalize(model, calib_samples, criterion="activation")
    assert record["criterion"] == "activation" and record["channels_scaled"] > 0
    assert _relative_error(run.outputs(model, held_out)[0], ref) < 1e-4
