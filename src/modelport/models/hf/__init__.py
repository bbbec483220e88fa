"""Hugging Face checkpoint folders (what ``save_pretrained`` writes) as a model source, by task.

One concern per module: ``folder`` checks what the folder holds (and refuses what it must),
``task`` decides the task, ``tokenizer`` and ``image_config`` read the preprocessing,
``sentence_pooling`` reads a sentence-transformers pipeline, ``wrappers`` give the graph its
inputs/outputs, ``adapter`` merges a PEFT LoRA, ``prepare`` puts it together, ``describe``
says what an export would make (``modelport inspect``). Importing this package imports no torch.
"""

from __future__ import annotations

from pathlib import Path

from modelport.models.prepared import PreparedModel


def is_hf_folder(path: Path) -> bool:
    """A directory that looks like a transformers checkpoint or a PEFT adapter folder."""
    from modelport.models.hf.folder import ADAPTER_CONFIG, CONFIG

    return path.is_dir() and ((path / CONFIG).is_file() or (path / ADAPTER_CONFIG).is_file())


def load_folder(path: str | Path, *, task: str | None = None,
                trust_pickle: bool = False) -> PreparedModel:
    """Load a checkpoint folder for ``task`` (read from the folder when None)."""
    from modelport.models.hf.prepare import prepare

    return prepare(Path(path), task=task, trust_pickle=trust_pickle)
