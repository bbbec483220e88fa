"""question-answering (extractive): `run --question Q --context C` -> the answer span of the
context and its score; long contexts are read in overlapping windows (tasks.qa_spans).
Fidelity: exact match of each evaluation window's best span vs the reference's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.errors import UsageError
from modelport.tasks.base import Answer, RunInputs, Task, as_points, positions_on, preprocessing
from modelport.tasks.qa_spans import (
    allowed_tokens,
    best_span,
    char_span,
    encode_windows,
    pair_tokenizer,
    window_feeds,
    window_params,
    window_spans,
)


@dataclass(frozen=True)
class Span:
    question: str
    answer: str
    score: float
    start: int  # character offsets in the context
    end: int


@dataclass
class Spans(Answer):
    spans: list[Span]

    def lines(self) -> list[str]:
        out = []
        for s in self.spans:
            out.append(f"{s.question!r}")
            out.append(f"  {s.answer!r}  score {s.score:.4f}  (context chars {s.start}-{s.end})")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"task": "question-answering", "predictions": [vars(s) for s in self.spans]}


def exact_match(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                feeds: Mapping[str, np.ndarray] | None, pre: Mapping[str, Any]) -> dict[str, float]:
    """Share of evaluation windows whose best span is the reference's, token for token. The
    candidates are the attended tokens (the context segment when the graph takes
    token_type_ids), the first token excluded, spans of at most max_answer_len tokens."""
    ref_start = np.asarray(reference["start_logits"])
    allowed = np.ones(ref_start.shape, bool)
    if feeds is not None:
        if "attention_mask" in feeds:
            allowed &= positions_on(np.asarray(feeds["attention_mask"]) == 1, ref_start.shape)
        if "token_type_ids" in feeds and np.asarray(feeds["token_type_ids"]).any():
            allowed &= positions_on(np.asarray(feeds["token_type_ids"]) == 1, ref_start.shape)
    longest = int((pre.get("question_answering") or {}).get("max_answer_len", 15))
    got = window_spans(np.asarray(outputs["start_logits"]), np.asarray(outputs["end_logits"]),
                       allowed, longest)
    ref = window_spans(ref_start, np.asarray(reference["end_logits"]), allowed, longest)
    em = float(np.mean([g == r for g, r in zip(got, ref, strict=True)])) if ref else 1.0
    return as_points(em, exact_match=em)


class QuestionAnswering(Task):
    name = "question-answering"
    fidelity = "question-answering"
    inputs = ("question",)
    metric_name = "exact_match"
    metric = staticmethod(exact_match)

    def check_more(self, bundle: Any, given: RunInputs) -> None:
        if given.question is not None and not (given.context or "").strip():
            raise UsageError("--question needs --context: the passage the answer is taken from "
                             "(--context \"...\")")
        if given.question is not None and not all(q.strip() for q in given.question):
            raise UsageError("--question is empty: give the question to answer")

    def predict(self, bundle: Any, session: Any, given: RunInputs) -> Answer:
        if given.feeds is not None:
            return super().predict(bundle, session, given)
        from modelport.calibration_data.text import pad_id

        pre = preprocessing(bundle)
        params = {**window_params(int(pre.get("max_length", 384))),
                  **(pre.get("question_answering") or {})}
        tok = pair_tokenizer(bundle.path / pre["tokenizer"], params)
        context = str(given.context)
        windows = encode_windows(tok, [(q, context) for q in given.question or []])
        names = [s.name for s in bundle.inputs]
        dtypes = {s.name: s.dtype for s in bundle.inputs}
        starts, ends = _infer_windows(bundle, session, windows, names, pad_id(tok), dtypes)
        best: dict[int, Span] = {}
        for row, window in enumerate(windows):
            s, e, score = best_span(starts[row], ends[row], allowed_tokens(window),
                                    int(params["max_answer_len"]))
            c0, c1 = char_span(window, s, e)
            span = Span(given.question[window.pair], context[c0:c1], score, c0, c1)
            if window.pair not in best or score > best[window.pair].score:
                best[window.pair] = span
        return Spans([best[i] for i in sorted(best)])


def _infer_windows(bundle: Any, session: Any, windows: list, names: list[str], pad: int,
                   dtypes: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """start/end logits of every window: one batch, or one window a call for a bundle built
    for a fixed batch size."""
    from modelport.shapes import fit_arrays

    static = isinstance(bundle.inputs[0].shape[0], int)
    groups = [[w] for w in windows] if static else [windows]
    starts, ends = [], []
    for group in groups:
        feeds = fit_arrays(window_feeds(group, names, pad, dtypes), bundle.inputs)
        out = session.infer(feeds)
        starts.extend(np.asarray(out["start_logits"]))
        ends.extend(np.asarray(out["end_logits"]))
    return starts, ends
