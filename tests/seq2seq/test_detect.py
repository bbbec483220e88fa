"""Which folders are encoder-decoders, and the targets they cannot have (no model loaded)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest


@pytest.mark.parametrize("arch, model_type", [
    ("T5ForConditionalGeneration", "t5"), ("T5Model", "t5"), ("BartModel", "bart"),
    ("BartForConditionalGeneration", "bart"), ("MarianMTModel", "marian"),
    ("PegasusForConditionalGeneration", "pegasus"), ("MBartForConditionalGeneration", "mbart"),
])
def test_seq2seq_architectures_are_text2text(arch, model_type):
    from modelport.models.hf.task import AUTO_CLASSES, choose_task

    folder = SimpleNamespace(path=Path("."), modules=None, architectures=[arch],
                             model_type=model_type, config={})
    choice = choose_task(folder, None)
    assert choice.task == "text2text-generation" and choice.modality == "text"
    assert AUTO_CLASSES[choice.task] == "AutoModelForSeq2SeqLM"


def test_bert_model_stays_feature_extraction():
    from modelport.models.hf.task import choose_task

    folder = SimpleNamespace(path=Path("."), modules=None, architectures=["BertModel"],
                             model_type="bert", config={})
    assert choose_task(folder, None).task == "feature-extraction"


@pytest.mark.parametrize("target, says", [
    ("tflite:cpu:fp32", "static shapes"), ("tensorrt:cuda:fp32", "TensorRT-LLM"),
    ("openvino:cpu:bf16", "fp32, int8wo or int4"),
])
def test_unsupported_targets_refused_with_the_reason(target, says):
    from modelport.errors import UnknownTarget
    from modelport.seq2seq_steps import check_targets
    from modelport.specs import Target

    with pytest.raises(UnknownTarget, match=says):
        check_targets([Target.parse(target)])


def test_generation_rules_follow_transformers_processors():
    import numpy as np

    from modelport.backends.seq2seq_logits import GenerationRules, banned_ngram_tokens

    rules = GenerationRules.from_dict({"decoder_start_token_id": 0, "eos_token_id": 1,
                                       "forced_bos_token_id": 5, "forced_eos_token_id": 1,
                                       "suppress_tokens": [3], "min_length": 3})
    scores = np.zeros((1, 8), np.float32)
    first = rules.apply(scores.copy(), np.zeros((1, 1), np.int64), max_length=10)
    assert first.argmax() == 5 and np.isinf(first[0, [0, 1, 2, 3, 4, 6, 7]]).all()
    mid = rules.apply(scores.copy(), np.zeros((1, 2), np.int64), max_length=10)
    assert np.isinf(mid[0, [1, 3]]).all() and np.isfinite(mid[0, [0, 2, 4]]).all()
    last = rules.apply(scores.copy(), np.zeros((1, 9), np.int64), max_length=10)
    assert last.argmax() == 1 and np.isinf(last[0, 0])
    assert banned_ngram_tokens([4, 5, 6, 4, 5], 3) == [6]
