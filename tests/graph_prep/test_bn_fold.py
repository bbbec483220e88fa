"""BatchNorm folding on a graph the dynamo exporter did not fold (a hand-made ONNX)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelport.graph_prep import run
from modelport.graph_prep.bn_fold import fold_batchnorms

pytestmark = pytest.mark.onnxruntime


def _conv_bn_relu_conv(rng) -> object:
    def init(name, value):
        return numpy_helper.from_array(value.astype(np.float32), name)

    inits = [
        init("w1", rng.standard_normal((8, 3, 3, 3))),
        init("gamma", rng.uniform(0.5, 2, 8)), init("beta", rng.uniform(-1, 1, 8)),
        init("mean", rng.uniform(-1, 1, 8)), init("var", rng.uniform(0.5, 2, 8)),
        init("w2", rng.standard_normal((4, 8, 1, 1))), init("b2", rng.standard_normal(4)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["bn"],
                         name="bn1", epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r"], name="relu1"),
        helper.make_node("Conv", ["r", "w2", "b2"], ["y"], name="conv2"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_batchnorm_folds_into_the_conv_and_keeps_the_function():
    rng = np.random.default_rng(0)
    model = _conv_bn_relu_conv(rng)
    samples = [{"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    ref = run.outputs(model, samples)[0]
    record = fold_batchnorms(model)
    assert record["batchnorms_folded"] == 1
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)
    conv1 = next(n for n in model.graph.node if n.name == "conv1")
    assert len(conv1.input) == 3  # a bias was added to carry beta - mean * gamma / std
    got = run.outputs(model, samples)[0]
    assert np.abs(got - ref).max() < 1e-4 * np.abs(ref).max()
