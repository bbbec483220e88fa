"""A CTC model's vocabulary, read with the folder's own tokenizer (Wav2Vec2CTCTokenizer) at
export, stored in the manifest's ``preprocessing.ctc`` so a device decodes without transformers
(``modelport.tasks.ctc``): tokens by id, the blank (pad) id, the word delimiter, casing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelport.errors import ModelLoadError
from modelport.models.hf.tokenizer import has_tokenizer


def ctc_vocab(folder: Path, vocab_size: int) -> dict[str, Any]:
    if not has_tokenizer(folder):
        raise ModelLoadError(
            f"'{folder}' has no tokenizer (vocab.json): a CTC model's transcript is decoded "
            "with the vocabulary it was trained with; save it there with "
            "processor.save_pretrained(DIR) (or the Wav2Vec2CTCTokenizer's)"
        )
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - tokenizer loaders raise many types for bad files
        first = str(exc).strip().splitlines()
        raise ModelLoadError(f"cannot load the tokenizer in '{folder}': {type(exc).__name__}: "
                             f"{first[0][:200] if first else ''}") from None
    delimiter = getattr(tok, "word_delimiter_token", None)
    if getattr(tok, "pad_token_id", None) is None or delimiter is None:
        raise ModelLoadError(
            f"the tokenizer in '{folder}' ({type(tok).__name__}) has no pad (CTC blank) token "
            "or word delimiter: a CTC model needs a Wav2Vec2CTCTokenizer-style vocabulary"
        )
    size = max(vocab_size, len(tok))
    vocab = [str(tok.convert_ids_to_tokens(i)) for i in range(size)]
    return {
        "vocab": vocab,
        "blank_id": int(tok.pad_token_id),
        "pad_token": str(tok.pad_token),
        "unk_token": str(tok.unk_token) if tok.unk_token is not None else "<unk>",
        "word_delimiter_token": str(delimiter),
        "word_delimiter_id": int(tok.convert_tokens_to_ids(delimiter)),
        "replace_word_delimiter_char": str(getattr(tok, "replace_word_delimiter_char", " ")),
        "do_lower_case": bool(getattr(tok, "do_lower_case", False)),
        "clean_up_tokenization_spaces": bool(getattr(tok, "clean_up_tokenization_spaces",
                                                     False)),
        "tokenizer_class": type(tok).__name__,
    }
