"""The QA and fill-mask fidelity metrics and span selection on hand-made logits (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.tasks.fill_mask import masked_top1_agreement
from modelport.tasks.qa_spans import best_span
from modelport.tasks.question_answering import exact_match


def test_best_span_keeps_start_before_end_within_the_answer_length_and_skips_cls():
    start = np.array([0.0, 0.0, 5.0, 0.0, 0.0, 0.0])
    end = np.array([0.0, 0.0, 0.0, 3.0, 0.0, 6.0])
    allowed = np.ones(6, bool)
    s, e, score = best_span(start, end, allowed, max_answer_len=15)
    assert (s, e) == (2, 5) and 0 < score < 1  # CLS (0) is never the answer
    s, e, _ = best_span(start, end, allowed, max_answer_len=2)
    assert (s, e) == (2, 3)  # 2..5 is four tokens: too long
    allowed[5] = False
    assert best_span(start, end, allowed)[:2] == (2, 3)  # a masked token cannot end it


def test_exact_match_counts_windows_whose_best_span_moved():
    rng = np.random.default_rng(0)
    ref = {"start_logits": rng.normal(size=(4, 10)), "end_logits": rng.normal(size=(4, 10))}
    got = {k: v.copy() for k, v in ref.items()}
    assert exact_match(got, ref, None, {})["exact_match"] == 1.0
    got["start_logits"][1] = -got["start_logits"][1]  # the second window answers elsewhere
    metrics = exact_match(got, ref, None, {})
    assert metrics["exact_match"] == 0.75 and metrics["accuracy_drop"] == 0.25
    # feeds shorter than a fixed-length graph's outputs: positions past them cannot answer
    feeds = {"attention_mask": np.ones((4, 6), np.int64)}
    assert exact_match(ref, ref, feeds, {})["exact_match"] == 1.0


def test_masked_top1_agreement_looks_at_the_masked_positions_only():
    rng = np.random.default_rng(1)
    ref = {"logits": rng.normal(size=(2, 5, 7))}
    got = {"logits": ref["logits"].copy()}
    got["logits"][0, 0] = -got["logits"][0, 0]  # an unmasked position changes: not counted
    feeds = {"input_ids": np.array([[1, 3, 4, 2, 0], [1, 4, 4, 2, 0]])}
    metrics = masked_top1_agreement(got, ref, feeds, {"mask_token_id": 4})
    assert metrics["masked_top1_agreement"] == 1.0 and metrics["masked_positions"] == 3
    got["logits"][1, 2] = -got["logits"][1, 2]
    drop = masked_top1_agreement(got, ref, feeds, {"mask_token_id": 4})["accuracy_drop"]
    assert drop == pytest.approx(1 / 3)
