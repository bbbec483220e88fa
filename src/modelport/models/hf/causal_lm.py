"""A causal-LM checkpoint folder -> PreparedModel whose graph carries the KV cache.

One graph serves prefill and decode: it takes ``input_ids`` [batch, seq], ``attention_mask``
[batch, past + seq], ``position_ids`` [batch, seq] and ``past_key_values.{i}.key/value``
[batch, kv_heads, past, head_dim] (past = 0 for the prefill) and returns ``logits`` and
``present.{i}.key/value`` [batch, kv_heads, past + seq, head_dim]. Grouped-query attention
only changes kv_heads. The session (``backends.lm_session``) feeds presents back as pasts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from modelport.errors import ModelLoadError
from modelport.models.prepared import PreparedModel
from modelport.specs import TensorSpec

if TYPE_CHECKING:
    from modelport.models.hf.describe import FolderPlan

TASK = "text-generation"


class KVCacheLM(torch.nn.Module):
    """transformers causal LM with the cache as flat tensors, so exporters see only tensors."""

    def __init__(self, model: Any, layers: int) -> None:
        super().__init__()
        self.model = model
        self.layers = layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor, past: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for i in range(self.layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=position_ids, past_key_values=cache, use_cache=True)
        flat: list[torch.Tensor] = []
        for layer in out.past_key_values.layers:
            flat += [layer.keys, layer.values]
        return (out.logits, *flat)


class NamedKV(torch.nn.Module):
    """The same module called with named feeds (what TorchSession passes)."""

    def __init__(self, inner: KVCacheLM, past_names: list[str]) -> None:
        super().__init__()
        self.inner = inner
        self.past_names = past_names

    def forward(self, **feeds: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.inner(feeds["input_ids"], feeds["attention_mask"], feeds["position_ids"],
                          [feeds[n] for n in self.past_names])


def cache_layout(model: Any) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Per layer, ((kv_heads, head_dim) of the keys, (kv_heads, head_dim) of the values), read
    from the cache the model itself returns for one token.

    Asked of the model rather than read from config.json: the config names differ per family
    and some say the wrong thing for the cache (a falcon-7b-style config, ``multi_query``,
    lists ``num_kv_heads`` equal to its attention heads while its attention caches one head).
    """
    with torch.no_grad():
        out = model(input_ids=torch.zeros((1, 1), dtype=torch.long), use_cache=True)
    cache = getattr(out, "past_key_values", None)
    layers = getattr(cache, "layers", None)
    if not layers:
        raise ModelLoadError(
            f"{type(model).__name__} returns no per-layer KV cache (past_key_values): modelport "
            "cannot lay out its cache inputs; export it with a file.py:factory"
        )
    return [((int(layer.keys.shape[1]), int(layer.keys.shape[-1])),
             (int(layer.values.shape[1]), int(layer.values.shape[-1]))) for layer in layers]


def context_length(config: dict[str, Any]) -> int:
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        if isinstance(config.get(key), int) and config[key] > 0:
            return int(config[key])
    return 2048


def lm_specs(config: dict[str, Any], layout: list[tuple[tuple[int, int], tuple[int, int]]]
             ) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's inputs and outputs (see the module docstring); ``layout`` from cache_layout."""
    vocab = int(config.get("vocab_size") or 0) or "vocab"
    inputs = [TensorSpec("input_ids", "int64", ("batch", "seq")),
              TensorSpec("attention_mask", "int64", ("batch", "total")),
              TensorSpec("position_ids", "int64", ("batch", "seq"))]
    outputs = [TensorSpec("logits", "float32", ("batch", "seq", vocab))]
    for i, per_kind in enumerate(layout):
        for kind, (kv_heads, head_dim) in zip(("key", "value"), per_kind, strict=True):
            inputs.append(TensorSpec(f"past_key_values.{i}.{kind}", "float32",
                                     ("batch", kv_heads, "past", head_dim)))
            outputs.append(TensorSpec(f"present.{i}.{kind}", "float32",
                                      ("batch", kv_heads, "past + seq", head_dim)))
    return inputs, outputs


def eos_ids(folder: Path, config: dict[str, Any]) -> list[int]:
    """eos of generation_config.json, else config.json; an int or a list there."""
    value = None
    gen = folder / "generation_config.json"
    if gen.is_file():
        value = json.loads(gen.read_text("utf-8")).get("eos_token_id")
    if value is None:
        value = config.get("eos_token_id")
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, list) else [value])]


def prepare_causal_lm(plan: FolderPlan, model: Any, *, name: str | None = None,
                      source: str | None = None) -> PreparedModel:
    """The KV-cache module, its specs, the tokenizer and generation config for the bundle."""
    from modelport.calibration_data.lm_text import lm_default_data

    model.config._attn_implementation = "eager"  # the exporters trace eager attention
    config = plan.folder.config
    inputs, outputs = lm_specs(config, cache_layout(model))
    past_names = [s.name for s in inputs[3:]]
    module = NamedKV(KVCacheLM(model, len(past_names) // 2).eval(), past_names).eval()
    path = plan.folder.path
    eos = eos_ids(path, config)
    context = context_length(config)
    generation = {"eos_token_id": eos, "pad_token_id": config.get("pad_token_id")}
    files = {"generation_config.json": json.dumps(generation, indent=1).encode()}
    assert plan.tokenizer_json is not None
    preprocessing = {"task": TASK, "max_length": context, "eos_token_id": eos,
                     "context_length": context, "generation_config": "generation_config.json"}
    tokenizer_json = plan.tokenizer_json
    return PreparedModel(
        name=name or path.resolve().name,
        source=source or f"{path} (Hugging Face folder, {TASK})",
        task=TASK, inputs=inputs, output_names=[s.name for s in outputs],
        example_inputs=example_feeds(inputs), module=module,
        tokenizer_json=tokenizer_json, max_length=context,
        default_data=lambda: lm_default_data(tokenizer_json),
        metadata={"hf_folder": str(path.resolve()), "hf_task": TASK,
                  "task_detected_from": plan.choice.how,
                  "architectures": plan.folder.architectures,
                  "model_type": plan.folder.model_type, "kv_cache": "one graph, past in/out"},
        preprocessing=preprocessing, bundle_files=files,
    )


def example_feeds(inputs: list[TensorSpec], *, batch: int = 2, seq: int = 3, past: int = 4,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Feeds with every dynamic size >= 2 (the dynamo exporter specializes sizes 0 and 1)."""
    rng = np.random.default_rng(seed)
    feeds = {"input_ids": rng.integers(0, 8, (batch, seq)).astype(np.int64),
             "attention_mask": np.ones((batch, past + seq), np.int64),
             "position_ids": np.tile(np.arange(past, past + seq, dtype=np.int64), (batch, 1))}
    for spec in inputs[3:]:
        shape = (batch, spec.shape[1], past, spec.shape[3])
        feeds[spec.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds
