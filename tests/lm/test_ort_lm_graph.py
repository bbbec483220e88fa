"""ONNX Runtime LM bundles: the KV-cache graph is fused before it ships (fewer nodes per decode
step), weight-only MatMulNBits run int8 activations by default (accuracy_level 4); the fp32
fused graph still generates what transformers generates (test_generate.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

pytestmark = [pytest.mark.onnxruntime]


def _ops(bundle: Path) -> Counter:
    import onnx

    graph = onnx.load(str(bundle / "model.onnx"), load_external_data=False).graph
    return Counter(node.op_type for node in graph.node)


def test_fp32_lm_graph_has_fused_norms(qwen2_export):
    _, result, error = qwen2_export
    assert error is None
    bundle = result.bundles["onnxruntime:cpu:fp32"]
    build = json.loads((bundle / "manifest.json").read_text())["build"]
    fusions = build["lm_fusions"]
    assert fusions["fused"] and fusions["nodes"] < fusions["nodes_before"]
    ops = _ops(bundle)
    # 2 layers x 2 RMSNorms + the final one: none left as Pow/ReduceMean chains
    assert ops["SkipSimplifiedLayerNormalization"] + ops["SimplifiedLayerNormalization"] >= 5
    assert ops["ReduceMean"] == 0
    # eager attention -> one GroupQueryAttention per layer (lm_attention.py): no Softmax left
    assert fusions["attention"]["rewritten"] == 2
    assert ops["GroupQueryAttention"] == 2 and ops["Softmax"] == 0
    assert fusions["nodes"] == sum(ops.values())
    # the bundle's runtime setting, re-applied at load: pool threads sleep between kernels
    assert build["runtime_settings"]["spinning"] is False
    import modelport

    with modelport.load(bundle) as session:
        assert session.inner.spinning is False


def test_weight_only_defaults_to_int8_activations(tiny_lm_export):
    _, result, error = tiny_lm_export
    assert error is None
    for precision in ("int4", "int8wo"):
        bundle = result.bundles[f"onnxruntime:cpu:{precision}"]
        build = json.loads((bundle / "manifest.json").read_text())["build"]
        assert build["accuracy_level"] == 4 and build["lm_fusions"]["fused"]
        import onnx

        graph = onnx.load(str(bundle / "model.onnx"), load_external_data=False).graph
        levels = {a.i for n in graph.node if n.op_type == "MatMulNBits"
                  for a in n.attribute if a.name == "accuracy_level"}
        assert levels == {4}


def test_gqa_bundle_generates_into_one_kv_buffer(qwen2_export):
    """A GroupQueryAttention bundle (runtime setting kv_buffer: shared) writes the cache into
    one preallocated buffer per layer (kv_buffer.py); a left-padded batch gives the tokens the
    concat path (past fed in, presents copied out) gives."""
    import numpy as np

    import modelport

    _, result, error = qwen2_export
    assert error is None
    bundle = result.bundles["onnxruntime:cpu:fp32"]
    build = json.loads((bundle / "manifest.json").read_text())["build"]
    assert build["lm_fusions"]["attention"]["kv_buffer"] == "shared"
    assert build["runtime_settings"]["kv_buffer"] == "shared"
    ids = np.random.default_rng(0).integers(5, 200, (3, 6)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[0, :2] = mask[1, :4] = 0
    with modelport.load(bundle) as session:
        shared = session.generate(ids, 8, attention_mask=mask)
        assert session.kv_buffer_used and session.step_lengths[0] == 6
        assert set(session.step_lengths[1:]) <= {1}
        single = session.generate(ids[1:2, 4:], 8)
        session.inner.kv_buffer = None  # the concat path of a graph not rewritten
        concat = session.generate(ids, 8, attention_mask=mask)
        assert not session.kv_buffer_used
    np.testing.assert_array_equal(shared, concat)
    new = single.shape[1] - 2  # an eos may end the single prompt before the batch
    np.testing.assert_array_equal(shared[1:2, 6:6 + new], single[:, 2:])
