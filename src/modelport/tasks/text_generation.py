"""text-generation: a prompt -> its continuation, with the bundle's own tokenizer.json and the
KV-cache session (no torch, no transformers). `run --prompt TEXT` or `run --text TEXT`
(repeatable: one continuation each). Fidelity: perplexity (modelport.metrics_lm)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.errors import UsageError
from modelport.tasks.base import Answer, Outputs, RunInputs, Task, preprocessing, run_feeds


@dataclass
class Generated(Answer):
    prompts: list[str]
    continuations: list[str]

    def lines(self) -> list[str]:
        return [p + c for p, c in zip(self.prompts, self.continuations, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        return {"task": "text-generation",
                "predictions": [{"prompt": p, "continuation": c, "text": p + c}
                                for p, c in zip(self.prompts, self.continuations, strict=True)]}


class TextGeneration(Task):
    name = "text-generation"
    fidelity = "text-generation"
    inputs = ("prompt", "text")

    def predict(self, bundle: Any, session: Any, given: RunInputs) -> Answer:
        if given.feeds is not None:
            return Outputs(run_feeds(bundle, session, given.feeds))
        from tokenizers import Tokenizer

        pre = preprocessing(bundle)
        from modelport.tasks.input_limit import untruncated

        # every token counted: a prompt past the context is refused, not cut (input_limit)
        tok = untruncated(Tokenizer.from_file(str(bundle.path / pre["tokenizer"])))
        prompts = [given.prompt] if given.prompt is not None else list(given.text or [])
        continuations = []
        for prompt in prompts:
            ids = encode_prompt(tok, prompt, pre.get("eos_token_id") or [])
            out = session.generate(ids, max_new_tokens=given.max_new_tokens,
                                   temperature=given.temperature, seed=given.seed)
            new = [int(t) for t in out[0, ids.shape[1]:]]
            continuations.append(decode_continuation(tok, ids[0].tolist(), new))
        return Generated(prompts, continuations)


def encode_prompt(tok: Any, prompt: str, eos: list[int]) -> np.ndarray:
    """The prompt's ids without a trailing eos the tokenizer's template may append: the
    model is to continue the text, not to start after its end."""
    ids = tok.encode(prompt).ids
    while len(ids) > 1 and ids[-1] in eos:
        ids = ids[:-1]
    if not ids:
        raise UsageError("the prompt encodes to no tokens: give some text")
    return np.asarray([ids], np.int64)


def decode_continuation(tok: Any, prompt_ids: list[int], new: list[int]) -> str:
    """The new text: decode(prompt + new) minus decode(prompt), so word boundaries the
    tokenizer's decoder puts between tokens come out right."""
    head = tok.decode(prompt_ids, skip_special_tokens=True)
    full = tok.decode(prompt_ids + new, skip_special_tokens=True)
    return full[len(head):] if full.startswith(head) else " " + tok.decode(
        new, skip_special_tokens=True)
