"""text-classification: sentences -> labels with scores (softmax, or sigmoid per label for a
multi-label model). Fidelity: top-1 agreement (accuracy when the data has labels)."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.tasks.base import Answer, RunInputs, Task, preprocessing, text_feeds
from modelport.tasks.classify_answer import Labels, logits_of
from modelport.tasks.postprocess import classify


class TextClassification(Task):
    name = "text-classification"
    fidelity = "classification"
    inputs = ("text",)

    def encode(self, bundle: Any, given: RunInputs) -> tuple[dict[str, np.ndarray], Any]:
        return text_feeds(bundle, given.text or []), None

    def decode(self, bundle: Any, outputs: dict[str, np.ndarray], given: RunInputs,
               state: Any) -> Answer:
        return labels_answer(self.name, bundle, outputs, list(given.text or []), given.top_k)


def labels_answer(task: str, bundle: Any, outputs: dict[str, np.ndarray], sources: list[str],
                  top_k: int, *, quoted: bool = True) -> Labels:
    pre = preprocessing(bundle)
    rows = classify(logits_of(outputs)[: len(sources)], pre.get("id2label"),
                    multi_label=bool(pre.get("multi_label")), top_k=top_k)
    return Labels(task, sources, rows, outputs, quoted=quoted)
