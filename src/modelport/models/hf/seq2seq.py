"""An encoder-decoder checkpoint (T5, BART, Marian, Pegasus, mBART, ...) as two graphs.

- ``encoder`` (input_ids [batch, src], attention_mask [batch, src]) ->
  ``cross.{i}.key/value`` [batch, heads, src, head_dim]: the cross-attention cache, computed
  once per input.
- ``decoder`` (decoder_input_ids [batch, 1], attention_mask [batch, src], ``past.{i}.key/value``
  [batch, heads, past, head_dim], ``cross.{i}.key/value``) -> logits [batch, 1, vocab] and
  ``present.{i}.key/value`` [batch, heads, past + 1, head_dim]: every step, the first with an
  empty past (past = 0), so one decoder graph serves the first and later steps.

The session (``backends.seq2seq_session``) feeds presents back as pasts. Both modules call the
transformers model itself with an ``EncoderDecoderCache``, so no family's layers are copied.
"""

from __future__ import annotations

from typing import Any

import torch


def cache_kwarg(model: Any) -> str:
    """The forward() keyword that takes the cache: ``cache`` (transformers 5) or
    ``past_key_values`` (older releases)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters \
        else "past_key_values"


def _caches(self_kv: list[torch.Tensor], cross_kv: list[torch.Tensor]) -> Any:
    from transformers import DynamicCache, EncoderDecoderCache

    own, cross = DynamicCache(), DynamicCache()
    for i in range(len(cross_kv) // 2):
        if self_kv:
            own.update(self_kv[2 * i], self_kv[2 * i + 1], i)
        cross.update(cross_kv[2 * i], cross_kv[2 * i + 1], i)
    return EncoderDecoderCache(own, cross)


def _flat(cache: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    own = [t for layer in cache.self_attention_cache.layers for t in (layer.keys, layer.values)]
    cross = [t for layer in cache.cross_attention_cache.layers
             for t in (layer.keys, layer.values)]
    return own, cross


class EncoderStep(torch.nn.Module):
    """The encoder and the cross-attention cache (one decoder call on the start token, of
    which only the cross-attention keys/values are kept: the exporter drops the rest, so the
    graph holds the encoder and the decoder's cross-attention projections only)."""

    def __init__(self, model: Any, start: int) -> None:
        super().__init__()
        self.model = model
        self.start = start

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache, EncoderDecoderCache

        # no config: it would size the caches by the encoder's layer count (T5's num_layers)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        start = torch.full((input_ids.shape[0], 1), self.start, dtype=input_ids.dtype)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         decoder_input_ids=start, use_cache=True,
                         **{cache_kwarg(self.model): cache})
        _, cross = _flat(out.past_key_values)
        return tuple(cross)


class DecoderStep(torch.nn.Module):
    """One decoder step with both caches given."""

    def __init__(self, model: Any, layers: int, d_model: int) -> None:
        super().__init__()
        self.model = model
        self.layers = layers
        self.d_model = d_model

    def forward(self, decoder_input_ids: torch.Tensor, attention_mask: torch.Tensor,
                past: list[torch.Tensor], cross: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        from transformers.modeling_outputs import BaseModelOutput

        # the encoder's states are not read (the cross cache is): a zero tensor of their shape
        # stands in for them so the model skips its encoder
        states = torch.zeros(attention_mask.shape[0], attention_mask.shape[1], self.d_model,
                             dtype=cross[0].dtype)
        out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=states),
                         attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                         use_cache=True, **{cache_kwarg(self.model): _caches(past, cross)})
        own, _ = _flat(out.past_key_values)
        return (out.logits, *own)


class Named(torch.nn.Module):
    """A step module called with named feeds (what TorchSession passes)."""

    def __init__(self, inner: torch.nn.Module, fixed: list[str], past: list[str],
                 cross: list[str]) -> None:
        super().__init__()
        self.inner, self.fixed, self.past, self.cross = inner, fixed, past, cross

    def forward(self, **feeds: torch.Tensor) -> tuple[torch.Tensor, ...]:
        args = [feeds[n] for n in self.fixed]
        if isinstance(self.inner, DecoderStep):
            return self.inner(*args, [feeds[n] for n in self.past],
                              [feeds[n] for n in self.cross])
        return self.inner(*args)
