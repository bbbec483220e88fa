"""The generation-config rules of an encoder-decoder model, applied to next-token scores as
transformers' logits processors do (numpy, so a runtime-only install generates the same tokens).

``GenerationRules.from_dict`` reads the bundle's generation_config.json; ``apply(scores,
sequences)`` sets banned tokens to -inf in place. ``sequences`` are the decoder tokens so far
(start token included), [rows, cur_len]. Covered: min_length / min_new_tokens (eos banned),
forced_bos_token_id (first step), forced_eos_token_id (last step before max_length),
suppress_tokens, begin_suppress_tokens (first step), single-token bad_words_ids and
no_repeat_ngram_size. Rules modelport does not apply (repetition_penalty, multi-token
bad_words_ids) are listed by ``unsupported`` so export can say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


@dataclass
class GenerationRules:
    decoder_start_token_id: int = 0
    eos_token_id: list[int] = field(default_factory=list)
    pad_token_id: int | None = None
    max_length: int = 20
    max_new_tokens: int | None = None
    min_length: int = 0
    forced_bos_token_id: int | None = None
    forced_eos_token_id: list[int] = field(default_factory=list)
    suppress_tokens: list[int] = field(default_factory=list)
    begin_suppress_tokens: list[int] = field(default_factory=list)
    bad_token_ids: list[int] = field(default_factory=list)
    no_repeat_ngram_size: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRules:
        bad = [w[0] for w in data.get("bad_words_ids") or [] if len(w) == 1]
        start = data.get("decoder_start_token_id")
        if isinstance(start, list):
            start = start[0]
        pad = data.get("pad_token_id")
        return cls(
            decoder_start_token_id=int(start if start is not None else (pad or 0)),
            eos_token_id=_ids(data.get("eos_token_id")), pad_token_id=pad,
            max_length=int(data.get("max_length") or 20),
            max_new_tokens=data.get("max_new_tokens"),
            min_length=int(data.get("min_length") or 0),
            forced_bos_token_id=data.get("forced_bos_token_id"),
            forced_eos_token_id=_ids(data.get("forced_eos_token_id")),
            suppress_tokens=_ids(data.get("suppress_tokens")),
            begin_suppress_tokens=_ids(data.get("begin_suppress_tokens")),
            bad_token_ids=bad, no_repeat_ngram_size=int(data.get("no_repeat_ngram_size") or 0),
            num_beams=int(data.get("num_beams") or 1),
            length_penalty=float(data.get("length_penalty", 1.0) or 0.0),
            early_stopping=data.get("early_stopping", False) or False)

    @property
    def pad(self) -> int:
        if self.pad_token_id is not None:
            return int(self.pad_token_id)
        return self.eos_token_id[0] if self.eos_token_id else 0

    def apply(self, scores: np.ndarray, sequences: np.ndarray, max_length: int,
              begin: int = 1) -> np.ndarray:
        """``scores`` [rows, vocab] with the rules of step ``sequences.shape[1]`` applied;
        ``begin``: the length of the decoder prompt (1: the start token; Whisper's
        start/language/task tokens: more), where begin_suppress_tokens and forced_bos apply."""
        cur = sequences.shape[1]
        vocab = scores.shape[-1]

        def ban(ids: list[int]) -> None:
            ok = [i for i in ids if 0 <= i < vocab]
            if ok:
                scores[:, ok] = -np.inf

        if cur < self.min_length:
            ban(self.eos_token_id)
        ban(self.suppress_tokens)
        ban(self.bad_token_ids)
        if cur == begin:
            ban(self.begin_suppress_tokens)
        if self.no_repeat_ngram_size and cur + 1 >= self.no_repeat_ngram_size:
            for row, seq in enumerate(sequences):
                for token in banned_ngram_tokens(seq.tolist(), self.no_repeat_ngram_size):
                    scores[row, token] = -np.inf
        if cur == begin and self.forced_bos_token_id is not None:
            force(scores, [int(self.forced_bos_token_id)])
        if cur == max_length - 1 and self.forced_eos_token_id:
            force(scores, self.forced_eos_token_id)
        return scores


def force(scores: np.ndarray, ids: list[int]) -> None:
    scores[:] = -np.inf
    scores[:, ids] = 0.0


def banned_ngram_tokens(seq: list[int], n: int) -> list[int]:
    """Tokens that would repeat an n-gram already in ``seq`` (transformers' rule)."""
    if len(seq) + 1 < n:
        return []
    prefix = tuple(seq[len(seq) - n + 1:])
    return [seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i:i + n - 1]) == prefix]


def unsupported(data: dict[str, Any]) -> list[str]:
    """Generation settings of the folder that this loop does not apply."""
    out = []
    if float(data.get("repetition_penalty") or 1.0) != 1.0:
        out.append(f"repetition_penalty {data['repetition_penalty']}")
    if any(len(w) > 1 for w in data.get("bad_words_ids") or []):
        out.append("multi-token bad_words_ids")
    if int(data.get("min_new_tokens") or 0):
        out.append("min_new_tokens")
    return out
