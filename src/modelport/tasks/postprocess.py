"""Logits -> labels with scores, as `modelport run` prints them (numpy only: runs on a device).

Scores are softmax over the labels, or an independent sigmoid per label when the model was
trained multi-label (``problem_type: multi_label_classification``), as transformers' own
pipelines do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scored:
    label: str
    score: float


def scores(logits: np.ndarray, *, multi_label: bool = False) -> np.ndarray:
    """Softmax over the last axis, or sigmoid per label for multi-label models (float64)."""
    x = np.asarray(logits, dtype=np.float64)
    if multi_label:
        return 1.0 / (1.0 + np.exp(-x))
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def label_name(id2label: Mapping[str, str] | None, index: int) -> str:
    """The configured name of class ``index`` (config.json stores the keys as strings)."""
    if id2label:
        name = id2label.get(str(index))
        if name is not None:
            return str(name)
    return f"LABEL_{index}"


def classify(
    logits: np.ndarray,
    id2label: Mapping[str, str] | None,
    *,
    multi_label: bool = False,
    top_k: int = 3,
    threshold: float = 0.5,
) -> list[list[Scored]]:
    """Per row: the top-k labels (single-label), or every label over ``threshold`` (multi-label;
    the best one if none passes, so a row never prints empty)."""
    probs = scores(np.asarray(logits).reshape(len(logits), -1), multi_label=multi_label)
    rows = []
    for row in probs:
        order = np.argsort(-row, kind="stable")
        if multi_label:
            picked = [i for i in order if row[i] >= threshold] or [int(order[0])]
        else:
            picked = list(order[:top_k])
        rows.append([Scored(label_name(id2label, int(i)), float(row[i])) for i in picked])
    return rows


@dataclass(frozen=True)
class WordLabel:
    word: str
    label: str
    score: float


def label_words(
    logits: np.ndarray,
    word_ids: Sequence[int | None],
    offsets: Sequence[tuple[int, int]],
    text: str,
    id2label: Mapping[str, str] | None,
    *,
    multi_label: bool = False,
) -> list[WordLabel]:
    """One label per word: the word's first sub-token decides (transformers' "first" strategy).

    Special tokens and padding have no word id, so they are masked out; a word's text is cut
    from ``text`` with the offsets of its first and last sub-token.
    """
    probs = scores(np.asarray(logits), multi_label=multi_label)
    spans: dict[int, list[int]] = {}
    for token, word in enumerate(word_ids):
        if word is None or token >= len(probs):
            continue
        spans.setdefault(word, []).append(token)
    out = []
    for word in sorted(spans):
        tokens = spans[word]
        first = tokens[0]
        start, end = offsets[first][0], offsets[tokens[-1]][1]
        best = int(np.argmax(probs[first]))
        out.append(WordLabel(text[start:end], label_name(id2label, best), float(probs[first][best])))
    return out
