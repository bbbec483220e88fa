"""PreparedModel of a question-answering or fill-mask folder: export-validation inputs made
from modelport's sentences (question/context pairs in windows; lines with masked tokens).
No default calibration set: INT8 needs the user's data (--calib: a JSONL of
{"question", "context"} for QA, text lines for fill-mask), and an FP32-only export is checked
on these made-up inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from modelport.models.prepared import PreparedModel

BENCH_SEQ = 128


def _qa_pairs(texts: list[str]) -> list[tuple[str, str]]:
    """A question made from one sentence (its first words), asked of it and its neighbours."""
    pairs = []
    for i in range(len(texts) - 2):
        words = texts[i + 1].rstrip(".!?").split()
        pairs.append((" ".join(["what", *words[:4]]) + "?", " ".join(texts[i : i + 3])))
    return pairs


def text_head_model(plan: Any, common: dict[str, Any]) -> PreparedModel:
    from modelport.calibration_data.text_tasks import masked_set, qa_set
    from modelport.models.data import sentences

    assert plan.tokenizer_json is not None
    pre = plan.preprocessing
    specs = {s.name: s for s in plan.inputs}
    texts = sentences()
    make: Callable[[int, int], Any]
    if plan.choice.task == "question-answering":
        pairs = _qa_pairs(texts)

        def make(start: int, batch: int):
            chosen = [pairs[(start + i) % len(pairs)] for i in range(batch)]
            return qa_set(chosen, plan.tokenizer_json, pre, specs, source="builtin")
    else:
        def make(start: int, batch: int):
            chosen = [texts[(start + i) % len(texts)] for i in range(batch)]
            return masked_set(chosen, plan.tokenizer_json, pre, specs, source="builtin")

    def make_inputs(batch: int) -> dict[str, np.ndarray]:
        rows = make(batch * 37, batch).stacked()  # long contexts: more windows than pairs
        return {k: v[:batch] for k, v in rows.items()}

    return PreparedModel(
        example_inputs=make_inputs(2), tokenizer_json=plan.tokenizer_json,
        max_length=plan.max_length, bench_dims={"seq": min(BENCH_SEQ, plan.max_length)},
        make_inputs=make_inputs, **common,
    )
