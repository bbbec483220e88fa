"""Greedy CTC decoding of per-frame logits into a transcript, as Wav2Vec2CTCTokenizer does.

argmax per frame -> collapse repeated ids -> drop the blank (the tokenizer's pad token) ->
the word delimiter (``|``) becomes a space -> join, strip; lower-cased when the tokenizer says
``do_lower_case``; transformers' ``clean_up_tokenization`` when the tokenizer sets it. This is
``tokenizer.decode(logits.argmax(-1))`` with ``skip_special_tokens=False``, what transformers'
automatic-speech-recognition pipeline prints for a CTC model. The vocabulary and ids travel in
the manifest's ``preprocessing.ctc`` (``modelport.models.hf.ctc_vocab`` reads them at export).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import Any

import numpy as np

#: transformers' PreTrainedTokenizerBase.clean_up_tokenization, in order
CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
            (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def greedy_ids(logits: np.ndarray) -> np.ndarray:
    """[frames, vocab] (or [batch, frames, vocab]) -> the best id per frame."""
    return np.asarray(logits).argmax(axis=-1)


def decode_ids(ids: Sequence[int], ctc: Mapping[str, Any]) -> str:
    """Token ids of one clip (one per frame) -> the transcript."""
    vocab: list[str] = list(ctc["vocab"])
    unk = str(ctc.get("unk_token", "<unk>"))
    pad = str(ctc.get("pad_token", "<pad>"))
    delimiter = ctc.get("word_delimiter_token", "|")
    space = str(ctc.get("replace_word_delimiter_char", " "))
    tokens = [vocab[i] if 0 <= i < len(vocab) and vocab[i] is not None else unk
              for i in (int(i) for i in ids)]
    chars = [token for token, _ in groupby(tokens)]
    chars = [space if c == delimiter else c for c in chars if c != pad]
    text = "".join(chars).strip()
    if ctc.get("do_lower_case"):
        text = text.lower()
    if ctc.get("clean_up_tokenization_spaces"):
        for old, new in CLEAN_UP:
            text = text.replace(old, new)
    return text


def transcribe(logits: np.ndarray, ctc: Mapping[str, Any]) -> list[str]:
    """[batch, frames, vocab] logits -> one transcript per row."""
    ids = greedy_ids(logits)
    return [decode_ids(row, ctc) for row in np.atleast_2d(ids)]


def word_ids(ids: Sequence[int], ctc: Mapping[str, Any]) -> list[tuple[int, ...]]:
    """Greedy ids -> words as tuples of token ids (collapse, drop blank, split at the delimiter):
    what word error rate compares when only ids are at hand."""
    blank = int(ctc["blank_id"])
    delimiter = ctc.get("word_delimiter_id")
    words: list[tuple[int, ...]] = []
    current: list[int] = []
    for token, _ in groupby(int(i) for i in ids):
        if token == blank:
            continue
        if delimiter is not None and token == int(delimiter):
            if current:
                words.append(tuple(current))
            current = []
        else:
            current.append(token)
    if current:
        words.append(tuple(current))
    return words
