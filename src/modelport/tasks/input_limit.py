"""The one rule for a token input longer than the model can take: refuse it, never cut it.

A causal LM's prompt plus the tokens to generate must fit its context (``max_position_embeddings``
/ ``n_positions`` of config.json, the bundle's ``preprocessing.context_length``); a seq2seq
encoder's input must fit its ``max_position_embeddings`` (T5's relative positions have no limit:
pass ``limit=None``). Past the limit the answer is an ``InputError`` (one line, exit 2) that names
both numbers and the way out; nothing is truncated silently (a tokenizer.json's own
``truncation`` setting is switched off before counting, see :func:`untruncated`), because
keeping only part of the text changes the answer without the user knowing.

- ``check_length(count, limit, *, what="prompt", new_tokens=0, flag="--max-new-tokens")``:
  raises InputError when ``count + new_tokens > limit``; ``limit=None`` accepts anything.
- ``untruncated(tokenizer)``: a ``tokenizers.Tokenizer`` with truncation switched off (the same
  object), so ``encode`` returns every token and the length check sees the real count.
"""

from __future__ import annotations

from typing import Any

from modelport.errors import InputError


def check_length(count: int, limit: int | None, *, what: str = "prompt", new_tokens: int = 0,
                 flag: str = "--max-new-tokens") -> None:
    """Refuse ``count`` input tokens (+ ``new_tokens`` to generate) past the model's ``limit``."""
    if limit is None or count + new_tokens <= limit:
        return
    room = max(limit - new_tokens, 1)
    if count > limit:
        raise InputError(
            f"the {what} is {count} tokens, longer than the model's context length {limit}"
            + (f" ({new_tokens} more to generate)" if new_tokens else "")
            + f": shorten it to at most {room} tokens (modelport never cuts input silently)")
    if count == limit:
        raise InputError(
            f"the {what} of {count} tokens fills the model's context length {limit}, leaving no "
            f"room for new tokens: shorten it to at most {room} tokens")
    raise InputError(
        f"the {what} of {count} tokens + {new_tokens} new tokens exceeds the model's context "
        f"length {limit}: lower {flag} to at most {limit - count} or shorten the {what}")


def untruncated(tokenizer: Any) -> Any:
    """The tokenizer with its tokenizer.json truncation off (the counts are checked instead)."""
    if getattr(tokenizer, "truncation", None):
        tokenizer.no_truncation()
    return tokenizer
