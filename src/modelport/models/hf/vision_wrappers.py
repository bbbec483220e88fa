"""torch modules that give a detector or a segmenter the graph outputs its bundle promises.

``pixel_values`` in; the named fields of transformers' output out (``logits`` and
``pred_boxes`` for a detector, ``logits`` for a semantic segmenter), as plain tensors in that
order, so the exporters never see a ModelOutput.
"""

from __future__ import annotations

from typing import Any

import torch


class NamedImageOutputs(torch.nn.Module):
    """``pixel_values`` float32 [batch, 3, H, W] -> the model output's ``names``, in order."""

    def __init__(self, model: Any, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.model(pixel_values=pixel_values)
        values = tuple(getattr(out, name) for name in self.names)
        return values[0] if len(values) == 1 else values
