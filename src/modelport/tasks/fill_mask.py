"""fill-mask: `run --text "the [MASK] sat"` (the folder's own mask token) -> the top-k tokens
for each masked position, with their scores and the filled-in text, as transformers' fill-mask
pipeline gives them. Fidelity: top-1 agreement at the masked positions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.errors import UsageError
from modelport.tasks.base import (
    Answer,
    RunInputs,
    Task,
    as_points,
    positions_on,
    preprocessing,
    text_feeds,
)
from modelport.tasks.postprocess import scores


@dataclass(frozen=True)
class Filled:
    token: int
    token_str: str
    score: float
    sequence: str


@dataclass
class FilledMasks(Answer):
    inputs: list[str]
    #: per input, per masked position (left to right), the top-k candidates
    masks: list[list[list[Filled]]]

    def lines(self) -> list[str]:
        out = []
        for text, positions in zip(self.inputs, self.masks, strict=True):
            out.append(f"{text!r}")
            for number, candidates in enumerate(positions, start=1):
                head = f"  mask {number}: " if len(positions) > 1 else "  "
                width = max(len(repr(c.token_str)) for c in candidates)
                out.extend(f"{head}{c.token_str!r:<{width}}  {c.score:.4f}  {c.sequence}"
                           for c in candidates)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"task": "fill-mask", "predictions": [
            {"input": text, "masks": [[vars(c) for c in cands] for cands in positions]}
            for text, positions in zip(self.inputs, self.masks, strict=True)]}


def masked_top1_agreement(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                          feeds: Mapping[str, np.ndarray] | None,
                          pre: Mapping[str, Any]) -> dict[str, float]:
    """Share of masked positions (input_ids == the mask token) whose top-1 token is the
    reference's; every attended position when the feeds are unknown."""
    ref = np.asarray(reference["logits"])
    got = np.asarray(outputs["logits"])
    where = np.ones(ref.shape[:2], bool)
    if feeds is not None and "input_ids" in feeds and pre.get("mask_token_id") is not None:
        where = positions_on(np.asarray(feeds["input_ids"]) == int(pre["mask_token_id"]), ref.shape[:2])
    elif feeds is not None and "attention_mask" in feeds:
        where = positions_on(np.asarray(feeds["attention_mask"]) == 1, ref.shape[:2])
    agree = got[where].argmax(-1) == ref[where].argmax(-1)
    top1 = float(agree.mean()) if agree.size else 1.0
    return as_points(top1, masked_top1_agreement=top1,
                     masked_positions=int(agree.size))


class FillMask(Task):
    name = "fill-mask"
    fidelity = "fill-mask"
    inputs = ("text",)
    metric_name = "masked_top1_agreement"
    metric = staticmethod(masked_top1_agreement)

    def check_more(self, bundle: Any, given: RunInputs) -> None:
        token = preprocessing(bundle).get("mask_token")
        for text in given.text or []:
            if token and token not in text:
                raise UsageError(f"{text!r} has no mask token: put this model's own mask token "
                                 f"'{token}' where a word is to be filled in")

    def encode(self, bundle: Any, given: RunInputs) -> tuple[dict[str, np.ndarray], Any]:
        feeds = text_feeds(bundle, given.text or [])
        return feeds, feeds

    def decode(self, bundle: Any, outputs: dict[str, np.ndarray], given: RunInputs,
               state: Any) -> Answer:
        from tokenizers import Tokenizer

        from modelport.calibration_data.text import pad_id

        pre = preprocessing(bundle)
        tok = Tokenizer.from_file(str(bundle.path / pre["tokenizer"]))
        mask_id, pad = int(pre["mask_token_id"]), pad_id(tok)
        texts = list(given.text or [])
        ids = np.asarray(state["input_ids"])
        attended = np.asarray(state["attention_mask"]) if "attention_mask" in state else ids != pad
        logits = np.asarray(outputs["logits"])
        masks = []
        for row, text in enumerate(texts):
            tokens = ids[row][attended[row].astype(bool)]
            positions = np.flatnonzero(tokens == mask_id)
            if not len(positions):
                raise UsageError(f"{text!r} has no mask token after tokenizing (it may have "
                                 "been cut at the model's length): put it earlier")
            single = len(positions) == 1
            per_position = []
            for index in positions:
                probs = scores(logits[row, index])
                order = np.argsort(-probs, kind="stable")[: given.top_k]
                per_position.append([
                    Filled(int(t), tok.decode([int(t)], skip_special_tokens=False),
                           float(probs[t]), _sequence(tok, tokens, index, int(t), single))
                    for t in order])
            masks.append(per_position)
        return FilledMasks(texts, masks)


def _sequence(tok: Any, tokens: np.ndarray, index: int, token: int, single: bool) -> str:
    """The text with the candidate in place (the other masks kept when there are several)."""
    filled = tokens.copy()
    filled[index] = token
    return tok.decode([int(t) for t in filled], skip_special_tokens=single)
