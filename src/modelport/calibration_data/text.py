"""Text -> feed dicts with a Hugging Face ``tokenizer.json`` (the `tokenizers` library, no torch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from modelport.errors import CalibrationDataError, MissingDependency
from modelport.specs import TensorSpec


class TextTokenizer:
    """Tokenize sentences into the int64 inputs a BERT-style graph takes."""

    def __init__(self, tokenizer_json: Path, *, max_length: int = 128) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise MissingDependency(
                "tokenizing text needs 'tokenizers': pip install \"modelport[onnxruntime]\""
            ) from None
        self.path = Path(tokenizer_json)
        self.max_length = max_length
        self._tok = Tokenizer.from_file(str(self.path))
        self.pad_id = pad_id(self._tok)
        self._tok.no_padding()
        self._tok.enable_truncation(max_length)

    def encode(
        self,
        texts: Sequence[str],
        specs: Mapping[str, TensorSpec],
        *,
        pad_to: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Encode a batch, padded to ``pad_to`` (or the longest text), for the inputs in ``specs``."""
        encodings = self._tok.encode_batch(list(texts))
        longest = max(len(e.ids) for e in encodings)
        length = max(pad_to or 0, longest)
        fields = {
            "input_ids": lambda e: e.ids,
            "attention_mask": lambda e: e.attention_mask,
            "token_type_ids": lambda e: e.type_ids,
        }
        unknown = [n for n in specs if n not in fields]
        if unknown:
            raise CalibrationDataError(
                f"text data can feed inputs named {sorted(fields)}; the model also takes "
                f"{unknown}: give a folder of .npz feeds instead"
            )
        out = {}
        for name, spec in specs.items():
            fill = self.pad_id if name == "input_ids" else 0  # the mask says what is padding
            array = np.full((len(encodings), length), fill, dtype=np.dtype(spec.dtype))
            for row, enc in enumerate(encodings):
                values = fields[name](enc)
                array[row, : len(values)] = values
            out[name] = array
        return out

    def word_spans(
        self, texts: Sequence[str]
    ) -> list[tuple[list[int | None], list[tuple[int, int]]]]:
        """Per text, each token's word index (None for special tokens) and character offsets,
        with the same truncation as ``encode``: token classification prints one label a word."""
        return [(list(e.word_ids), [tuple(o) for o in e.offsets])
                for e in self._tok.encode_batch(list(texts))]


#: pad tokens of common vocabularies, tried when the tokenizer file declares no padding
PAD_TOKENS = ("[PAD]", "<pad>", "<|pad|>", "<|padding|>")


def pad_id(tokenizer) -> int:
    """The id padding positions get: the tokenizer file's own padding setting, else its pad
    token, else 0 (decoder vocabularies often have none; the attention mask hides it anyway).
    RoBERTa-style models number positions from the non-pad tokens, so the real id matters."""
    padding = tokenizer.padding
    if padding and padding.get("pad_id") is not None:
        return int(padding["pad_id"])
    for token in PAD_TOKENS:
        found = tokenizer.token_to_id(token)
        if found is not None:
            return int(found)
    return 0
