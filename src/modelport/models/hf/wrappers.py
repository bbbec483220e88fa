"""torch modules that give a transformers model the graph I/O a bundle promises.

Text graphs take keyword tensors named like the tokenizer's outputs (``input_ids``,
``attention_mask``, ``token_type_ids``) and return one tensor: ``logits`` for classifiers (per
token for token classification), ``sentence_embedding`` for a sentence-transformers folder
(its pooling and normalization, as ``SentenceTransformer.encode``), ``last_hidden_state``
otherwise. Image graphs take ``pixel_values``. Only tensors cross the graph boundary: the
exporters never see transformers' ModelOutput objects.
"""

from __future__ import annotations

from typing import Any

import torch

from modelport.models.hf.sentence_pooling import SentencePipeline


class TextHead(torch.nn.Module):
    """One named output (``logits`` / ``last_hidden_state``) of a text model, or several in
    order (question answering: ``start_logits``, ``end_logits``) as a tuple."""

    def __init__(self, model: Any, output: str | tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> Any:
        out = self.model(**_feeds(input_ids, attention_mask, token_type_ids))
        if isinstance(self.output, tuple):
            return tuple(getattr(out, name) for name in self.output)
        return getattr(out, self.output)


class SentenceEmbedder(torch.nn.Module):
    """Transformer -> Pooling (cls / max / mean / mean_sqrt_len_tokens, concatenated) ->
    Normalize, as sentence-transformers computes them."""

    def __init__(self, model: Any, pipeline: SentencePipeline) -> None:
        super().__init__()
        self.model = model
        self.pooling = tuple(pipeline.pooling)
        self.normalize = pipeline.normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.model(**_feeds(input_ids, attention_mask, token_type_ids)).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        vectors = []
        for mode in self.pooling:
            if mode == "cls":
                first = attention_mask.to(torch.int32).argmax(dim=1)
                index = first.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
                vectors.append(torch.gather(hidden, 1, index).squeeze(1))
            elif mode == "max":
                vectors.append(hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values)
            else:
                count = torch.clamp(mask.sum(dim=1), min=1e-9)
                denominator = count if mode == "mean" else torch.sqrt(count)
                vectors.append((hidden * mask).sum(dim=1) / denominator)
        out = torch.cat(vectors, dim=1) if len(vectors) > 1 else vectors[0]
        if self.normalize:
            out = torch.nn.functional.normalize(out, p=2.0, dim=1)
        return out


class ImageHead(torch.nn.Module):
    """``pixel_values`` float32 [batch, 3, H, W] -> one named output of an image model."""

    def __init__(self, model: Any, output: str) -> None:
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return getattr(self.model(pixel_values=pixel_values), self.output)


def _feeds(input_ids, attention_mask, token_type_ids) -> dict[str, torch.Tensor]:
    feeds = {"input_ids": input_ids}
    if attention_mask is not None:
        feeds["attention_mask"] = attention_mask
    if token_type_ids is not None:
        feeds["token_type_ids"] = token_type_ids
    return feeds
