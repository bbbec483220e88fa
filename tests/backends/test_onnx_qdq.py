"""Pre-processing shared by the INT8 builds of one export (onnx_qdq.shared_preprocessing)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.onnxruntime


def _graph(path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(64, 32)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y0"]), helper.make_node("Relu", ["y0"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 32])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path),
              save_as_external_data=True, location=path.name + ".data", size_threshold=0)


def test_a_large_graph_is_preprocessed_once_per_export_and_copied_whole(tmp_path, monkeypatch):
    """Inside shared_preprocessing the second build of the same graph gets the first one's
    pre-processed files (byte-equal, its own copies); outside it nothing is kept."""
    from onnxruntime.quantization import shape_inference

    from modelport.backends import onnx_qdq

    monkeypatch.setattr(onnx_qdq, "LARGE_MODEL_BYTES", 0)  # this small graph counts as large
    src = tmp_path / "model.onnx"
    _graph(src)
    runs = []
    real = shape_inference.quant_pre_process
    monkeypatch.setattr(shape_inference, "quant_pre_process",
                        lambda *a, **k: (runs.append(a[1]), real(*a, **k))[1])
    outs = [tmp_path / d / "pre.onnx" for d in ("ort", "trt", "alone")]
    for out in outs:
        out.parent.mkdir()
    kept = tmp_path / "kept"
    with onnx_qdq.shared_preprocessing(kept):
        onnx_qdq.preprocess(src, outs[0])
        onnx_qdq.preprocess(src, outs[1])
    onnx_qdq.preprocess(src, outs[2])
    assert runs == [str(outs[0]), str(outs[2])]  # the second build copied
    for out in outs[1:]:
        for name in ("pre.onnx", "pre.onnx.data"):
            assert (out.parent / name).read_bytes() == (outs[0].parent / name).read_bytes()
            assert (out.parent / name).stat().st_ino != (outs[0].parent / name).stat().st_ino
    assert len(list(kept.iterdir())) == 1 and "dir" not in onnx_qdq._SHARED
    import onnxruntime as ort

    x = np.ones((2, 64), np.float32)
    got = ort.InferenceSession(str(outs[1]), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
