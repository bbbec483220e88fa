"""torch module that gives a transformers audio model the graph I/O a bundle promises:
``input_values`` float32 in, one named tensor (``logits``) out; no ModelOutput crosses the
graph boundary (see ``modelport.models.hf.wrappers`` for the text and image ones)."""

from __future__ import annotations

from typing import Any

import torch


class AudioHead(torch.nn.Module):
    """``input_values`` ([batch, samples] waveform, or [batch, frames, mel] fbank) -> one
    named output of an audio classifier or CTC model."""

    def __init__(self, model: Any, output: str) -> None:
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return getattr(self.model(input_values=input_values), self.output)
