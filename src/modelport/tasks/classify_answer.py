"""The answer of a classifier: labels with scores per input, or one label per word (token
classification), printed as `modelport run` prints them and serialized to JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.tasks.base import Answer
from modelport.tasks.postprocess import Scored, WordLabel


@dataclass
class Labels(Answer):
    """Per input: its top-k labels (or every multi-label one over the threshold)."""

    task: str
    inputs: list[str]
    labels: list[list[Scored]]
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    quoted: bool = True  # texts are printed quoted, image paths as they are

    def lines(self) -> list[str]:
        out = []
        for source, scored in zip(self.inputs, self.labels, strict=True):
            out.append(f"{source!r}" if self.quoted else source)
            width = max(len(s.label) for s in scored)
            out.extend(f"  {s.label:<{width}}  {s.score:.4f}" for s in scored)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task,
                "predictions": [{"input": source, "labels": [vars(s) for s in scored]}
                                for source, scored in zip(self.inputs, self.labels, strict=True)],
                "outputs": {k: np.asarray(v).tolist() for k, v in self.outputs.items()}}


@dataclass
class WordLabels(Answer):
    """Per text: one label per word."""

    task: str
    inputs: list[str]
    words: list[list[WordLabel]]
    outputs: dict[str, np.ndarray] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = []
        for text, words in zip(self.inputs, self.words, strict=True):
            out.append(f"{text!r}")
            width = max((len(w.word) for w in words), default=0)
            out.extend(f"  {w.word:<{width}}  {w.label:<12}  {w.score:.4f}" for w in words)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task,
                "predictions": [{"input": text, "words": [vars(w) for w in words]}
                                for text, words in zip(self.inputs, self.words, strict=True)],
                "outputs": {k: np.asarray(v).tolist() for k, v in self.outputs.items()}}


def logits_of(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return outputs.get("logits", next(iter(outputs.values())))
