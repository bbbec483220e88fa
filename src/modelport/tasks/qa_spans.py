"""Extractive question answering without torch: (question, context) -> overlapping windows of
token ids, and start/end logits -> the best answer span, as transformers' question-answering
pipeline did (v4: the pipeline is gone from transformers 5, the method is not).

A context longer than the model's window is read in windows of ``max_length`` tokens that
overlap by ``stride`` tokens (the question repeated in each); every window proposes its best
span, scored by softmax(start) x softmax(end) over the context tokens, and the best-scoring
span over all windows is the answer, snapped to whole words with the tokenizer's offsets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_ANSWER_LEN = 15  # tokens, as transformers' pipeline
MAX_WINDOW = 384  # the pipeline's max_seq_len ceiling


def window_params(max_length: int) -> dict[str, int]:
    """The pipeline's defaults for a model whose tokenizer takes ``max_length`` tokens."""
    window = min(int(max_length), MAX_WINDOW)
    return {"max_length": window, "stride": min(window // 2, 128),
            "max_answer_len": MAX_ANSWER_LEN}


@dataclass
class Window:
    """One window of one (question, context) pair: the tokenizer's encoding and its row."""

    pair: int  # index of the (question, context) pair
    encoding: Any  # a tokenizers.Encoding
    p_mask: np.ndarray  # True where a token cannot be part of an answer (question, specials)


def pair_tokenizer(tokenizer_json: Any, params: Mapping[str, int]) -> Any:
    """A ``tokenizers.Tokenizer`` that truncates only the context, with overlap ``stride``."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.no_padding()
    tok.enable_truncation(int(params["max_length"]), stride=int(params["stride"]),
                          strategy="only_second")
    return tok


def _fit_stride(tok: Any, question: str) -> None:
    """A long question leaves fewer context tokens per window than the stride: overlap less
    (at least one new context token per window), or refuse a question with no room left."""
    settings = tok.truncation
    special = tok.post_processor.num_special_tokens_to_add(True) if tok.post_processor else 0
    room = int(settings["max_length"]) - special - len(
        tok.encode(question, add_special_tokens=False).ids)
    if room < 1:
        from modelport.errors import UsageError

        raise UsageError(f"the question {question[:60]!r} fills the model's whole "
                         f"{settings['max_length']}-token window: ask a shorter question")
    stride = min(int(settings["stride"]), room - 1)
    if stride != int(settings["stride"]):
        tok.enable_truncation(int(settings["max_length"]), stride=stride, strategy="only_second")


def encode_windows(tok: Any, pairs: Sequence[tuple[str, str]]) -> list[Window]:
    """Every window of every (question, context) pair, in order."""
    cls_ids = {tok.token_to_id(t) for t in ("[CLS]", "<s>", "<cls>", "[cls]")} - {None}
    windows = []
    default = dict(tok.truncation)
    for index, (question, context) in enumerate(pairs):
        _fit_stride(tok, question)
        first = tok.encode(question, context)
        if tok.truncation["stride"] != default["stride"]:
            tok.enable_truncation(default["max_length"], stride=default["stride"],
                                  strategy="only_second")
        for enc in (first, *first.overflowing):
            p_mask = np.array([s != 1 for s in enc.sequence_ids], dtype=bool)
            # the CLS token stays (models may point at it for "no answer"): as the pipeline
            p_mask[np.isin(np.asarray(enc.ids), list(cls_ids))] = False
            windows.append(Window(index, enc, p_mask))
    return windows


def window_feeds(windows: Sequence[Window], names: Sequence[str], pad_id: int,
                 dtypes: Mapping[str, str] | None = None, *,
                 pad_to: int | None = None) -> dict[str, np.ndarray]:
    """The windows as one padded batch of the graph's text inputs."""
    length = max([len(w.encoding.ids) for w in windows] + [pad_to or 0])
    fields = {"input_ids": lambda e: e.ids, "attention_mask": lambda e: e.attention_mask,
              "token_type_ids": lambda e: e.type_ids}
    out = {}
    for name in names:
        fill = pad_id if name == "input_ids" else 0
        array = np.full((len(windows), length), fill,
                        dtype=np.dtype((dtypes or {}).get(name, "int64")))
        for row, w in enumerate(windows):
            values = fields[name](w.encoding)
            array[row, : len(values)] = values
        out[name] = array
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def best_span(start_logits: np.ndarray, end_logits: np.ndarray, allowed: np.ndarray,
              max_answer_len: int = MAX_ANSWER_LEN) -> tuple[int, int, float]:
    """(start token, end token, score) of one window: softmax over the allowed tokens (CLS
    included, then zeroed, as the pipeline), best start <= end < start + max_answer_len."""
    n = len(allowed)
    start = np.where(allowed, np.asarray(start_logits[:n], np.float64), -10000.0)
    end = np.where(allowed, np.asarray(end_logits[:n], np.float64), -10000.0)
    start, end = _softmax(start), _softmax(end)
    start[0] = end[0] = 0.0
    scores = np.tril(np.triu(np.outer(start, end)), max_answer_len - 1)
    s, e = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(s), int(e), float(scores[s, e])


def allowed_tokens(window: Window) -> np.ndarray:
    return ~window.p_mask & (np.asarray(window.encoding.attention_mask) == 1)


def char_span(window: Window, start: int, end: int) -> tuple[int, int]:
    """Character offsets in the context, snapped to the words the tokens belong to."""
    enc = window.encoding
    first, last = enc.token_to_word(start), enc.token_to_word(end)
    if first is not None and last is not None:  # a tokenizer without words keeps the offsets
        head, tail = enc.word_to_chars(first, 1), enc.word_to_chars(last, 1)
        if head is not None and tail is not None:
            return int(head[0]), int(tail[1])
    return int(enc.offsets[start][0]), int(enc.offsets[end][1])


def window_spans(start_logits: np.ndarray, end_logits: np.ndarray,
                 allowed: np.ndarray | None = None,
                 max_answer_len: int = MAX_ANSWER_LEN) -> list[tuple[int, int]]:
    """The best (start, end) token span of every row of a batch (the fidelity metric's unit);
    ``allowed``: tokens that may be in an answer (default: every token but the first)."""
    spans = []
    for row in range(len(start_logits)):
        ok = np.ones(start_logits.shape[1], bool) if allowed is None else allowed[row]
        s, e, _ = best_span(start_logits[row], end_logits[row], ok, max_answer_len)
        spans.append((s, e))
    return spans
