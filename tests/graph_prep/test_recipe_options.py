"""--cnn-recipe: parsed before any work, applied to convolutional graphs only, recorded."""

from __future__ import annotations

import pytest

from modelport.backends.base import BuildOptions
from modelport.errors import UsageError
from modelport.graph_prep.options import AUTO_STEPS, CnnRecipe, parse_recipe


def test_parse_recipe():
    assert parse_recipe(None) == CnnRecipe(AUTO_STEPS, auto=True)
    assert parse_recipe("off").off
    # steps run in the recipe's order whatever order they are given in
    assert parse_recipe("bias-correct,bn-fold").steps == ("bn-fold", "bias-correct")
    assert parse_recipe(["equalize"]).describe() == "equalize"
    with pytest.raises(UsageError, match="did you mean 'equalize'"):
        parse_recipe("equalise")
    with pytest.raises(UsageError, match="--cnn-recipe"):
        BuildOptions(cnn_recipe="bn-fold,nonsense")
    assert BuildOptions(cnn_recipe="off").cnn_recipe.off


def _mlp(path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], [w])
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.onnxruntime
def test_recipe_applies_to_conv_graphs_only(relu_cnn, calib_samples, tmp_path):
    from modelport.calibration_data import CalibrationSet
    from modelport.graph_prep.recipe import prepare_for_int8

    calib = CalibrationSet(calib_samples[:8])
    mlp = _mlp(tmp_path / "mlp.onnx")
    path, record = prepare_for_int8(mlp, calib, tmp_path)
    assert path == mlp and not record["applied"] and "no Conv" in record["reason"]
    path, record = prepare_for_int8(relu_cnn, calib, tmp_path, "off")
    assert path == relu_cnn and record == {"recipe": "off", "applied": False,
                                           "reason": "switched off (--cnn-recipe off)"}
    path, record = prepare_for_int8(relu_cnn, calib, tmp_path, None, skip=("bias-correct",))
    assert path != relu_cnn and [s["name"] for s in record["steps"]] == ["bn-fold", "equalize"]
    assert record["left_to_the_backend"] == ["bias-correct"]


@pytest.mark.onnxruntime
def test_a_recipe_failure_never_blocks_the_build(relu_cnn, calib_samples, tmp_path, monkeypatch):
    from modelport.calibration_data import CalibrationSet
    from modelport.graph_prep import recipe

    def broken(*args, **kwargs):
        raise RuntimeError("ORT cannot run this graph\nsecond line")

    monkeypatch.setattr(recipe, "run_steps", broken)
    path, record = recipe.prepare_for_int8(relu_cnn, CalibrationSet(calib_samples[:4]), tmp_path)
    assert path == relu_cnn and record["applied"] is False
    assert record["reason"].startswith("failed (RuntimeError: ORT cannot run this graph)")
