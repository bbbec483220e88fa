"""The graph outputs and device preprocessing of the text heads beyond classification:
extractive question answering (``start_logits`` + ``end_logits``, the window length and
stride) and fill-mask (``logits`` per token over the vocabulary, the folder's own mask token).
Read from the folder without loading weights, so `modelport inspect` shows them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelport.errors import ModelLoadError
from modelport.specs import TensorSpec

#: mask tokens of common vocabularies, tried when tokenizer_config.json names none
MASK_TOKENS = ("[MASK]", "<mask>", "<MASK>", "[mask]")


def _question_answering(folder: Path, config: dict[str, Any], tokenizer_json: Path,
                        max_length: int) -> tuple[list[TensorSpec], dict[str, Any]]:
    from modelport.tasks.qa_spans import window_params

    outputs = [TensorSpec("start_logits", "float32", ("batch", "seq")),
               TensorSpec("end_logits", "float32", ("batch", "seq"))]
    return outputs, {"question_answering": window_params(max_length)}


def _fill_mask(folder: Path, config: dict[str, Any], tokenizer_json: Path,
               max_length: int) -> tuple[list[TensorSpec], dict[str, Any]]:
    token, token_id = mask_token(folder, tokenizer_json)
    vocab = int(config.get("vocab_size") or 0) or "vocab"
    return ([TensorSpec("logits", "float32", ("batch", "seq", vocab))],
            {"mask_token": token, "mask_token_id": token_id})


#: task -> (folder, config, tokenizer.json, max_length) -> (graph outputs, preprocessing)
TEXT_HEADS: dict[str, Callable[..., tuple[list[TensorSpec], dict[str, Any]]]] = {
    "question-answering": _question_answering,
    "fill-mask": _fill_mask,
}


def mask_token(folder: Path, tokenizer_json: Path) -> tuple[str, int]:
    """The folder's mask token (tokenizer_config.json's, else a common one) and its id."""
    from tokenizers import Tokenizer

    named = None
    config_file = folder / "tokenizer_config.json"
    if config_file.is_file():
        try:
            named = json.loads(config_file.read_text(encoding="utf-8")).get("mask_token")
        except (ValueError, UnicodeDecodeError, AttributeError):
            named = None
        if isinstance(named, dict):
            named = named.get("content")
    tok = Tokenizer.from_file(str(tokenizer_json))
    for candidate in ([named] if named else []) + list(MASK_TOKENS):
        found = tok.token_to_id(candidate)
        if found is not None:
            return candidate, int(found)
    raise ModelLoadError(
        f"'{folder}' is a masked language model but its tokenizer has no mask token "
        f"({named or ', '.join(MASK_TOKENS)}): save the tokenizer it was trained with"
    )
