"""The LM head of ORT LM bundles: packed as MatMulNBits with the body (weight-only targets), and
run on the last position only when generation feeds ``logits_to_keep`` (lm_head.py); scoring
without it still gets every position, so perplexity and the stored samples are unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest

import modelport
from modelport.backends.lm_session import prefill_feeds

pytestmark = [pytest.mark.onnxruntime]


def _graph(bundle):
    import onnx

    return onnx.load(str(bundle / "model.onnx"), load_external_data=False).graph


@pytest.mark.parametrize("fixture,target", [("tiny_lm_export", "onnxruntime:cpu:int4"),
                                            ("tiny_lm_export", "onnxruntime:cpu:int8wo"),
                                            ("qwen2_export", "onnxruntime:cpu:fp32")])
def test_head_runs_on_the_last_position_when_asked(fixture, target, request):
    _, result, _ = request.getfixturevalue(fixture)
    bundle = result.bundles[target]
    build = json.loads((bundle / "manifest.json").read_text())["build"]
    assert build["lm_fusions"]["head"]["logits_to_keep"] is True
    graph = _graph(bundle)
    head = next(n for n in graph.node if n.output[0] == "logits" or "logits" in n.output)
    if target.endswith(("int4", "int8wo")):  # the head is packed with the body
        assert head.op_type == "MatMulNBits"
    ids = np.random.default_rng(1).integers(5, 200, (2, 9)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[0, :3] = 0  # left padding
    with modelport.load(bundle) as session:
        assert "logits_to_keep" in session.inner.optional_inputs and session.keep_last
        feeds = prefill_feeds(ids, mask, session.past_specs)
        every = session.inner._infer(feeds)  # no logits_to_keep: every position, as before
        last = session.inner._infer({**feeds, "logits_to_keep": np.ones(1, np.int64)})
        assert every["logits"].shape == (2, 9, every["logits"].shape[-1])
        assert last["logits"].shape == (2, 1, every["logits"].shape[-1])
        np.testing.assert_allclose(last["logits"], every["logits"][:, -1:], rtol=0, atol=1e-5)
        for name, value in every.items():  # the KV cache does not depend on it
            if name != "logits":
                np.testing.assert_array_equal(last[name], value)
        # generate: the prompt's step returns one position per row
        seen = []
        step = type(session).step

        def spy(feeds, cache=None):
            out = step(session, feeds, cache)
            seen.append(out["logits"].shape[1])
            return out

        session.step = spy
        session.generate(ids, 3, attention_mask=mask)
        assert seen[0] == 1 and session.step_lengths[0] == 9


def test_scoring_still_sees_every_position(tiny_lm_export):
    """Perplexity reads every position's logits (no logits_to_keep fed): the int4 bundle, its
    head packed too, is within the int4 budget (test_weight_only.py checks every target)."""
    _, result, _ = tiny_lm_export
    bundle = result.bundles["onnxruntime:cpu:int4"]
    ids = np.random.default_rng(2).integers(5, 200, (1, 12)).astype(np.int64)
    with modelport.load(bundle) as session:
        assert session.logits(ids, np.ones_like(ids)).shape[:2] == (1, 12)
    accuracy = json.loads((bundle / "manifest.json").read_text())["accuracy"]
    assert accuracy["passed"] and accuracy["metrics"]["perplexity_increase"] <= 0.10
