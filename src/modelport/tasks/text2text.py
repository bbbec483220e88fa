"""text2text-generation (T5, BART, Marian, Pegasus, ...): a text -> its translation / summary /
answer, with the bundle's own tokenizer.json and the two-graph session
(backends.seq2seq_session); no torch, no transformers.

`run --text TEXT` (repeatable: one batch, one answer each), ``--num-beams``,
``--max-new-tokens``. The folder's ``task_specific_params`` prefix is put before each text when
the folder has exactly one (T5's "translate English to German: "); with several, none is
guessed. An input longer than the encoder's positions is refused (tasks.input_limit), an empty
one too. Fidelity: chrF of the decoded outputs against torch's (tasks.chrf).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.errors import InputError, UsageError
from modelport.tasks.base import Answer, Outputs, RunInputs, Task, preprocessing, run_feeds


@dataclass
class Generated(Answer):
    inputs: list[str]
    outputs: list[str]

    def lines(self) -> list[str]:
        return list(self.outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"task": "text2text-generation",
                "predictions": [{"input": i, "generated_text": o}
                                for i, o in zip(self.inputs, self.outputs, strict=True)]}


def tokenizer_of(bundle: Any) -> Any:
    from tokenizers import Tokenizer

    from modelport.tasks.input_limit import untruncated

    pre = preprocessing(bundle)
    return untruncated(Tokenizer.from_file(str(bundle.path / pre["tokenizer"])))


def encode_batch(tok: Any, texts: list[str], pad: int, prefix: str = ""
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded (input_ids, attention_mask), as transformers' tokenizers give them."""
    rows = []
    for text in texts:
        if not text.strip():
            raise InputError("an input text is empty: give some text to generate from")
        rows.append(tok.encode(prefix + text).ids)
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for i, row in enumerate(rows):
        ids[i, :len(row)], mask[i, :len(row)] = row, 1
    return ids, mask


def decode_batch(tok: Any, sequences: np.ndarray) -> list[str]:
    return [tok.decode([int(t) for t in row], skip_special_tokens=True) for row in sequences]


class Text2Text(Task):
    name = "text2text-generation"
    fidelity = "text2text-generation"
    inputs = ("text",)
    metric_name = "chrf"

    def check_more(self, bundle: Any, given: RunInputs) -> None:
        if given.num_beams is not None and given.num_beams < 1:
            raise UsageError(f"--num-beams must be >= 1, got {given.num_beams}")
        if given.max_new_tokens < 1:
            raise UsageError(f"--max-new-tokens must be >= 1, got {given.max_new_tokens}")

    def predict(self, bundle: Any, session: Any, given: RunInputs) -> Answer:
        if given.feeds is not None:
            return Outputs(run_feeds(bundle, session, given.feeds))
        self.check_more(bundle, given)
        texts = list(given.text or [])
        tok = tokenizer_of(bundle)
        ids, mask = encode_batch(tok, texts, session.rules.pad,
                                 preprocessing(bundle).get("prefix") or "")
        out = session.generate(ids, mask, max_new_tokens=given.max_new_tokens,
                               num_beams=given.num_beams)
        return Generated(texts, decode_batch(tok, out))
