"""The tokenizer a text checkpoint was trained with, as the ``tokenizer.json`` a bundle carries.

transformers 5 builds an *empty* tokenizer from a folder that has none (every word becomes
[UNK]), so the files are checked here first. A folder with only vocabulary files (vocab.txt,
vocab.json + merges.txt, a sentencepiece model) gets its fast tokenizer written out as
tokenizer.json, so the device needs `tokenizers` only.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.errors import ModelLoadError

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model")
#: the inputs modelport's tokenizer wrapper (calibration_data.text) can produce, in graph order
SUPPORTED_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: model types whose position ids start after the padding index (RoBERTa's 514 positions
#: hold 512 tokens)
PADDING_OFFSET_TYPES = frozenset({"roberta", "xlm-roberta", "camembert", "longformer", "mpnet",
                                  "data2vec-text", "xlm-roberta-xl"})
HUGE = 100_000  # transformers' "no limit" model_max_length is 1e30


@dataclass(frozen=True)
class TextInputs:
    tokenizer_json: Path
    input_names: list[str]  # in graph order
    max_length: int


def has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in TOKENIZER_FILES)


def text_inputs(folder: Path, config: dict[str, Any], *, st_max_length: int | None = None,
                tokenizer_dir: Path | None = None) -> TextInputs:
    """tokenizer.json, the graph's input names and the truncation length for a text model."""
    source = tokenizer_dir or folder
    if not has_tokenizer(source):
        raise ModelLoadError(
            f"'{source}' has no tokenizer ({', '.join(TOKENIZER_FILES[:3])}, ...): a text "
            "model needs the tokenizer it was trained with; save it there with "
            "tokenizer.save_pretrained(DIR)"
        )
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - tokenizer loaders raise many types for bad files
        raise ModelLoadError(
            f"cannot load the tokenizer in '{source}': {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}"
        ) from None
    names = list(getattr(tok, "model_input_names", None) or ["input_ids", "attention_mask"])
    unknown = [n for n in names if n not in SUPPORTED_INPUTS]
    if unknown:
        raise ModelLoadError(
            f"the tokenizer in '{source}' makes inputs {unknown} that modelport cannot feed "
            f"(it feeds {', '.join(SUPPORTED_INPUTS)}); export with a file.py:factory instead"
        )
    ordered = [n for n in SUPPORTED_INPUTS if n in names]
    path = source / "tokenizer.json"
    if not path.is_file():
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is None:
            raise ModelLoadError(
                f"the tokenizer in '{source}' has no fast (tokenizers) form to ship in a "
                "bundle; save a tokenizer.json there (tokenizer.save_pretrained with a fast "
                "tokenizer)"
            )
        path = _scratch_dir() / "tokenizer.json"
        backend.save(str(path))
    return TextInputs(path, ordered, max_length(config, tok, st_max_length))


def max_length(config: dict[str, Any], tok: Any, st_max_length: int | None) -> int:
    """The longest sequence the model can take: positions, tokenizer and pipeline limits."""
    limits = []
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        if config.get("model_type") in PADDING_OFFSET_TYPES:
            positions -= int(config.get("pad_token_id") or 0) + 1
        limits.append(positions)
    tok_max = getattr(tok, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < HUGE:
        limits.append(tok_max)
    if st_max_length:
        limits.append(int(st_max_length))
    return min(limits) if limits else 512


_SCRATCH: list[Path] = []


def _scratch_dir() -> Path:
    """A temp dir that lives as long as the process (the bundle writer copies from it)."""
    path = Path(tempfile.mkdtemp(prefix="modelport-tokenizer-"))
    _SCRATCH.append(path)
    if len(_SCRATCH) == 1:
        atexit.register(lambda: [shutil.rmtree(p, ignore_errors=True) for p in _SCRATCH])
    return path
