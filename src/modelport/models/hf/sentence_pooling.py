"""A sentence-transformers folder's pipeline (modules.json): Transformer -> Pooling -> Normalize.

Read from its own files (1_Pooling/config.json, sentence_bert_config.json), so the exported
graph outputs what ``SentenceTransformer.encode`` returns, without importing
sentence-transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelport.errors import ModelLoadError
from modelport.models.hf.folder import Folder, read_json

#: pooling modes modelport exports, by their sentence-transformers names
MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens")
#: the legacy boolean keys (sentence-transformers < 6 writes these), in its concatenation order
LEGACY_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
               "pooling_mode_mean_tokens": "mean",
               "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
               "pooling_mode_weightedmean_tokens": "weightedmean",
               "pooling_mode_lasttoken": "lasttoken"}
KNOWN = ("Transformer", "Pooling", "Normalize")


@dataclass(frozen=True)
class SentencePipeline:
    pooling: tuple[str, ...]  # concatenated in this order, as sentence-transformers does
    normalize: bool
    max_seq_length: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"pooling": list(self.pooling), "normalize": self.normalize,
                "max_seq_length": self.max_seq_length}


def read_pipeline(folder: Folder) -> SentencePipeline | None:
    """None for a folder without modules.json (then the graph outputs the hidden states)."""
    if not folder.modules:
        return None
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in folder.modules]
    other = [k for k in kinds if k not in KNOWN]
    if other:
        raise ModelLoadError(
            f"'{folder.path}': sentence-transformers module(s) {other} are not supported "
            f"(modelport exports {' -> '.join(KNOWN)}); export with a file.py:factory"
        )
    pooling: tuple[str, ...] = ("mean",)
    for module, kind in zip(folder.modules, kinds, strict=True):
        if kind == "Pooling":
            config = read_json(folder.path / str(module.get("path", "")) / "config.json")
            pooling = pooling_modes(config)
            unsupported = [m for m in pooling if m not in MODES]
            if unsupported or not pooling:
                raise ModelLoadError(
                    f"'{folder.path}': pooling {unsupported or 'none'} is not supported "
                    f"(modelport pools {', '.join(MODES)}); export with a file.py:factory"
                )
    max_seq = None
    if (folder.path / "sentence_bert_config.json").is_file():
        max_seq = read_json(folder.path / "sentence_bert_config.json").get("max_seq_length")
    return SentencePipeline(pooling, "Normalize" in kinds, max_seq)


def pooling_modes(config: dict[str, Any]) -> tuple[str, ...]:
    """``pooling_mode`` (a name or a list), else the legacy ``pooling_mode_*`` booleans."""
    mode = config.get("pooling_mode")
    if isinstance(mode, str):
        return (mode,)
    if isinstance(mode, list):
        return tuple(str(m) for m in mode)
    return tuple(name for key, name in LEGACY_KEYS.items() if config.get(key))
