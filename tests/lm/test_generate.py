"""KV-cache bundles generate what transformers generates, token for token, in FP32."""

from __future__ import annotations

import numpy as np
import pytest

import modelport
from modelport.errors import InputError

pytestmark = [pytest.mark.onnxruntime, pytest.mark.openvino]

PROMPTS = [[5, 17, 42, 9], [3, 100, 7, 8, 60, 11, 12]]
NEW = 16


def transformers_generate(folder, prompt: list[int]) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW,
                         do_sample=False)
    return out[0].tolist()


@pytest.mark.parametrize("arch", ["gpt2_export", "qwen2_export", "falcon_export"])
def test_fp32_generation_equals_transformers(arch, request):
    folder, result, _ = request.getfixturevalue(arch)
    assert set(result.bundles) == {"onnxruntime:cpu:fp32", "openvino:cpu:fp32"}
    for prompt in PROMPTS:
        want = transformers_generate(folder, prompt)
        for target, bundle in result.bundles.items():
            with modelport.load(bundle) as session:
                got = session.generate(np.array([prompt], np.int64), max_new_tokens=NEW)
                assert got.dtype == np.int64 and got.shape[0] == 1
                assert got[0].tolist() == want, target
                # the KV cache is used: the prompt once, then one token per decode step
                steps = session.step_lengths
                assert steps[0] == len(prompt) and set(steps[1:]) == {1}
                assert len(steps) == got.shape[1] - len(prompt)


def test_batch_left_padded_matches_single_prompts(qwen2_export):
    _, result, _ = qwen2_export
    short, long = PROMPTS
    pad = len(long) - len(short)
    ids = np.array([[0] * pad + short, long], np.int64)
    mask = np.array([[0] * pad + [1] * len(short), [1] * len(long)], np.int64)
    with modelport.load(result.bundles["onnxruntime:cpu:fp32"]) as session:
        batch = session.generate(ids, max_new_tokens=6, attention_mask=mask)
        for row, prompt in enumerate(PROMPTS):
            alone = session.generate(np.array([prompt], np.int64), max_new_tokens=6)
            k = alone.shape[1] - len(prompt)
            assert batch[row, len(long):len(long) + k].tolist() == alone[0, len(prompt):].tolist()


def test_bad_prompts_are_one_line_errors(gpt2_export):
    _, result, _ = gpt2_export
    with modelport.load(result.bundles["onnxruntime:cpu:fp32"]) as session:
        with pytest.raises(InputError, match="context length 64"):
            session.generate(np.ones((1, 60), np.int64), max_new_tokens=8)
        with pytest.raises(InputError, match="needs attention_mask"):
            session.generate(np.ones((2, 3), np.int64), max_new_tokens=2)


def test_stops_at_eos_and_sampling_is_seeded(gpt2_export):
    _, result, _ = gpt2_export
    with modelport.load(result.bundles["openvino:cpu:fp32"]) as session:
        greedy = session.generate(np.array([PROMPTS[0]], np.int64), max_new_tokens=NEW)
        first_new = int(greedy[0, len(PROMPTS[0])])
        session.eos = [first_new]  # as if the folder's generation config named it
        stopped = session.generate(np.array([PROMPTS[0]], np.int64), max_new_tokens=NEW)
        assert stopped[0].tolist() == PROMPTS[0] + [first_new]
        session.eos = []
        a = session.generate(np.array([PROMPTS[0]]), max_new_tokens=8, temperature=1.0,
                             top_k=5, seed=3)
        b = session.generate(np.array([PROMPTS[0]]), max_new_tokens=8, temperature=1.0,
                             top_k=5, seed=3)
        assert a.tolist() == b.tolist()


def test_bundle_carries_tokenizer_and_generation_config(gpt2_export):
    import json

    _, result, _ = gpt2_export
    bundle = result.bundles["onnxruntime:cpu:fp32"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["preprocessing"]["task"] == "text-generation"
    assert manifest["preprocessing"]["eos_token_id"] == [2]
    assert (bundle / "tokenizer.json").is_file()
    assert json.loads((bundle / "generation_config.json").read_text())["eos_token_id"] == [2]
    names = [s["name"] for s in manifest["inputs"]]
    assert names[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert "past_key_values.0.key" in names
    assert modelport.verify(bundle)["outputs_checked"]
