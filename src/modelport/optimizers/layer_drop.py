"""Layer dropping (DistilBERT-style): keep every other transformer block of the teacher.

The student starts from the teacher's own weights (embeddings, the kept blocks, pooling), so
distillation starts close to the teacher instead of from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from modelport.errors import UsageError
from modelport.optimizers.base import Pass, PassContext

if TYPE_CHECKING:
    from torch import nn


@dataclass
class LayerDrop(Pass):
    name: ClassVar[str] = "layer-drop"
    keep: list[int] | None = None  # block indices to keep; default every other (0, 2, 4, ...)
    every: int = 2
    path: str | None = None  # dotted path of the block ModuleList; default: found
    _structure: dict[str, Any] = field(default_factory=dict, repr=False)

    def apply(self, model: nn.Module, ctx: PassContext) -> nn.Module:
        path = self.path or find_blocks(model)
        blocks = _get(model, path)
        n = len(blocks)
        keep = list(self.keep) if self.keep is not None else list(range(0, n, self.every))
        if not keep or any(not 0 <= i < n for i in keep) or len(set(keep)) != len(keep):
            raise UsageError(f"layer-drop: keep must list distinct block indices in [0, {n}), "
                             f"got {keep}")
        drop_blocks(model, path, keep)
        self._structure = {"op": "layer-drop", "path": path, "keep": keep}
        self.details = {"path": path, "blocks_before": n, "blocks_after": len(keep), "keep": keep}
        return model

    def structure(self) -> dict[str, Any] | None:
        return self._structure


def find_blocks(model: nn.Module) -> str:
    """The dotted path of the longest ModuleList of identical blocks (the encoder's layers)."""
    from torch import nn

    best, best_len = None, 1
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > best_len \
                and len({type(m) for m in module}) == 1:
            best, best_len = name, len(module)
    if best is None:
        raise UsageError("layer-drop found no stack of repeated blocks (nn.ModuleList) to thin; "
                         "give path: to name it")
    return best


def drop_blocks(model: nn.Module, path: str, keep: list[int]) -> None:
    """Replace the ModuleList at ``path`` with its ``keep`` blocks; fix HF configs and indices."""
    from torch import nn

    blocks = _get(model, path)
    parent_path, _, attr = path.rpartition(".")
    parent = _get(model, parent_path) if parent_path else model
    kept = nn.ModuleList([blocks[i] for i in keep])
    setattr(parent, attr, kept)
    for i, block in enumerate(kept):
        for sub in block.modules():  # HF attention modules carry their layer index (KV caches)
            if hasattr(sub, "layer_idx"):
                sub.layer_idx = i
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "num_hidden_layers"):
            config.num_hidden_layers = len(keep)
            if getattr(config, "layer_types", None):
                config.layer_types = [config.layer_types[i] for i in keep]


def _get(model: nn.Module, path: str) -> Any:
    out: Any = model
    for part in path.split(".") if path else []:
        out = out[int(part)] if part.isdigit() else getattr(out, part)
    return out


def replay(model: nn.Module, record: dict[str, Any]) -> None:
    drop_blocks(model, record["path"], list(record["keep"]))
