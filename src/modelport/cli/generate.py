"""`modelport run BUNDLE --prompt TEXT`: generate with a text-generation bundle, print the text.

Only tokenizers and the bundle's runtime are needed (no torch, no transformers): the prompt is
encoded and the new tokens decoded with the bundle's own tokenizer.json.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from modelport.errors import UsageError


def print_generation(bundle: Any, args: argparse.Namespace) -> int:
    pre = bundle.manifest.get("preprocessing") or {}
    if pre.get("task") != "text-generation":
        raise UsageError(f"{bundle.path} is not a text-generation bundle (task "
                         f"{pre.get('task') or 'unknown'}): use --text, --image or --input")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bundle.path / pre["tokenizer"]))
    ids = encode_prompt(tok, args.prompt, pre.get("eos_token_id") or [])
    with bundle.session(threads=args.threads) as session:
        out = session.generate(ids, max_new_tokens=args.max_new_tokens,
                               temperature=args.temperature, seed=args.seed)
    new = [int(t) for t in out[0, ids.shape[1]:]]
    print(args.prompt + decode_continuation(tok, ids[0].tolist(), new))
    return 0


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
