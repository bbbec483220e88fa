"""token-classification: sentences -> one label per word (the word's first sub-token decides,
transformers' "first" strategy). Fidelity: top-1 agreement per token."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.tasks.base import Answer, RunInputs, Task, preprocessing, text_feeds
from modelport.tasks.classify_answer import WordLabels, logits_of
from modelport.tasks.postprocess import label_words


class TokenClassification(Task):
    name = "token-classification"
    fidelity = "classification"
    inputs = ("text",)

    def encode(self, bundle: Any, given: RunInputs) -> tuple[dict[str, np.ndarray], Any]:
        return text_feeds(bundle, given.text or []), None

    def decode(self, bundle: Any, outputs: dict[str, np.ndarray], given: RunInputs,
               state: Any) -> Answer:
        pre = preprocessing(bundle)
        texts = list(given.text or [])
        spans = bundle.tokenizer().word_spans(texts)
        words = [label_words(row, word_ids, offsets, text, pre.get("id2label"),
                             multi_label=bool(pre.get("multi_label")))
                 for text, row, (word_ids, offsets) in zip(texts, logits_of(outputs), spans,
                                                           strict=True)]
        return WordLabels(self.name, texts, words, outputs)
