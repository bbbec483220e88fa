"""Calibration/evaluation data of the QA and fill-mask heads: JSONL pairs in windows, masked
text lines, one-line errors for bad files. Tokenizers only (no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelport.calibration_data.text_tasks import load_text_task, masked_set
from modelport.errors import CalibrationDataError
from modelport.specs import TensorSpec
from tests.models.checkpoints import wordpiece_tokenizer

SPECS = {n: TensorSpec(n, "int64", ("batch", "seq"))
         for n in ("input_ids", "attention_mask", "token_type_ids")}


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory):
    tok, _ = wordpiece_tokenizer(list(SPECS))
    path = tmp_path_factory.mktemp("tok")
    tok.save_pretrained(path)
    return path / "tokenizer.json"


def test_a_long_context_becomes_overlapping_windows_with_the_question_in_each(tokenizer_json,
                                                                             tmp_path):
    context = " ".join(["john lives in paris"] * 12)
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"question": "who lives in paris?", "context": context}) + "\n\n")
    pre = {"task": "question-answering", "max_length": 24,
           "question_answering": {"max_length": 24, "stride": 8, "max_answer_len": 15}}
    rows = load_text_task(data, pre, tokenizer_json, SPECS).stacked()
    assert rows["input_ids"].shape[0] >= 3 and rows["input_ids"].shape[1] == 24
    # every window starts with [CLS] + the question: segment 0, the context segment 1
    assert (rows["input_ids"][:, 0] == rows["input_ids"][0, 0]).all()
    assert (rows["token_type_ids"][:, 1] == 0).all() and rows["token_type_ids"].max() == 1


@pytest.mark.parametrize(("line", "fragment"), [
    ("not json", "line 1 is not JSON"),
    ('{"question": "q"}', 'non-empty "question" and "context"'),
    ('["q", "c"]', 'non-empty "question" and "context"'),
])
def test_a_bad_qa_line_is_one_line(tokenizer_json, tmp_path, line, fragment):
    data = tmp_path / "qa.jsonl"
    data.write_text(line + "\n")
    with pytest.raises(CalibrationDataError, match=fragment):
        load_text_task(data, {"task": "question-answering"}, tokenizer_json, SPECS)


def test_fill_mask_lines_get_masks_unless_they_have_their_own(tokenizer_json):
    from tokenizers import Tokenizer

    mask = Tokenizer.from_file(str(tokenizer_json)).token_to_id("[MASK]")
    texts = ["the cat sat on the mat and the dog was slow", "john [MASK] in paris"]
    pre = {"task": "fill-mask", "mask_token": "[MASK]", "mask_token_id": mask}
    rows = masked_set(texts, tokenizer_json, pre, SPECS, source="t").stacked()
    ids = rows["input_ids"]
    assert (ids[0] == mask).sum() == 2  # 15% of its 11 word tokens, rounded
    assert (ids[1] == mask).sum() == 1  # its own mask kept, nothing added
    assert ids[0, 0] != mask and ids[0, rows["attention_mask"][0].sum() - 1] != mask
    again = masked_set(texts, tokenizer_json, pre, SPECS, source="t").stacked()
    np.testing.assert_array_equal(again["input_ids"], ids)  # the same file, the same masks
