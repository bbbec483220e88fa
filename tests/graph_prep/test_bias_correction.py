"""Empirical bias correction moves the weight-quantized graph's mean output error to zero."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from modelport.graph_prep import run
from modelport.graph_prep.bias_correction import correct_biases, fake_quant, mean_output_error
from modelport.graph_prep.recipe import run_steps

pytestmark = pytest.mark.onnxruntime


def test_fake_quant_is_per_channel_symmetric():
    w = np.array([[1.0, -0.5, 0.26], [100.0, 3.0, -50.0]])
    q = fake_quant(w, 0, 127)
    assert q[0, 0] == 1.0 and q[1, 0] == 100.0  # each channel's max is a level
    assert np.abs(q - w).max(axis=1) == pytest.approx([0.5 / 127, 50 / 127], rel=1e-6)
    assert np.allclose(fake_quant(w.T, 1, 127), q.T)


@pytest.mark.parametrize("qmax", [127, 64])  # 64: ONNX Runtime's 7-bit weights
def test_bias_correction_moves_the_mean_output_error_toward_zero(relu_cnn, calib_samples,
                                                                  held_out, tmp_path, qmax):
    path, _ = run_steps(relu_cnn, calib_samples, tmp_path, ["bn-fold", "equalize"])
    model = onnx.load(str(path))
    reference = run.outputs(model, held_out)[0]  # the float graph, on unseen inputs
    before = mean_output_error(reference, model, held_out, qmax=qmax)
    record = correct_biases(model, calib_samples, qmax=qmax)
    after = mean_output_error(reference, model, held_out, qmax=qmax)
    assert record["layers_corrected"] == 6  # 5 convs and the Gemm head
    assert before > 0
    # the systematic part of the rounding error is what correction removes; measured on
    # inputs it never saw, at least halved (measured: ~40x smaller)
    assert after < 0.5 * before


def test_undo_gives_float_layers_their_own_bias_back(relu_cnn, calib_samples, tmp_path):
    """A layer the float fallback keeps float has no weight rounding to correct: ``undo`` with
    the recorded shifts restores exactly the bias it had before bias correction."""
    from modelport.graph_prep.bias_correction import undo
    from modelport.graph_prep.graph import GraphView
    from modelport.graph_prep.recipe import bias_shifts

    plain, _ = run_steps(relu_cnn, calib_samples, tmp_path / "plain", ["bn-fold", "equalize"])
    corrected, _ = run_steps(relu_cnn, calib_samples, tmp_path / "bc",
                             ["bn-fold", "equalize", "bias-correct"])
    shifts = bias_shifts(corrected)
    assert len(shifts) == 6 and bias_shifts(plain) == {}
    model = onnx.load(str(corrected))
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and n.name in shifts)
    assert undo(model, shifts, {conv.name}) == 1

    def biases(m):
        view = GraphView(m)
        return {n.name: view.value(n.input[2]) for n in m.graph.node
                if n.name in shifts and len(n.input) > 2 and n.input[2]}

    restored, before, after = biases(model), biases(onnx.load(str(plain))), \
        biases(onnx.load(str(corrected)))
    # the restored layer has its uncorrected bias (a zero one where bias correction added it)
    assert np.allclose(restored[conv.name], before.get(conv.name, 0.0), atol=1e-6)
    assert not np.allclose(after[conv.name], restored[conv.name])
    for name in set(shifts) - {conv.name}:  # every other layer keeps its correction
        assert np.array_equal(restored[name], after[name])
