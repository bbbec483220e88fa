"""An encoder-decoder checkpoint folder -> PreparedModel holding its two step modules
(models.hf.seq2seq), the tokenizer, the generation config and the source-length limit."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from modelport.models.hf.seq2seq import DecoderStep, EncoderStep, Named, cache_kwarg
from modelport.models.prepared import PreparedModel
from modelport.specs import TensorSpec

if TYPE_CHECKING:
    from modelport.models.hf.describe import FolderPlan

TASK = "text2text-generation"
#: families whose positions are relative (no table to run past): no source-length limit
RELATIVE_POSITIONS = ("t5", "mt5", "umt5", "longt5")
#: generation-config keys the session applies (backends.seq2seq_logits), or reports unapplied
GENERATION_KEYS = ("decoder_start_token_id", "eos_token_id", "pad_token_id", "max_length",
                   "max_new_tokens", "min_length", "min_new_tokens", "forced_bos_token_id",
                   "forced_eos_token_id", "suppress_tokens", "begin_suppress_tokens",
                   "bad_words_ids", "no_repeat_ngram_size", "num_beams", "length_penalty",
                   "early_stopping", "repetition_penalty")


class Seq2SeqModules(torch.nn.Module):
    """The two step modules; ``encoder`` also serves as the model's ``module``."""

    def __init__(self, model: Any, encoder: Named, decoder: Named,
                 specs: dict[str, tuple[list[TensorSpec], list[TensorSpec]]]) -> None:
        super().__init__()
        self.model, self.encoder, self.decoder = model, encoder, decoder
        #: graph name -> (inputs, outputs): graph_specs
        self.specs = specs

    def forward(self, **feeds: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.encoder(**feeds)


def cache_shape(model: Any) -> tuple[int, int, int]:
    """(decoder layers, kv heads, head dim), from the caches the model returns for one step."""
    from transformers import DynamicCache, EncoderDecoderCache

    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    with torch.no_grad():
        start = int(model.config.decoder_start_token_id or 0)
        out = model(input_ids=torch.zeros((1, 2), dtype=torch.long),
                    decoder_input_ids=torch.full((1, 1), start), use_cache=True,
                    **{cache_kwarg(model): cache})
    layers = out.past_key_values.cross_attention_cache.layers
    keys = layers[0].keys
    return len(layers), int(keys.shape[1]), int(keys.shape[-1])


def graph_specs(layers: int, heads: int, head_dim: int, vocab: int
                ) -> dict[str, tuple[list[TensorSpec], list[TensorSpec]]]:
    """The encoder and decoder graphs' inputs and outputs (see models.hf.seq2seq)."""
    kv = [f"{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    logits = TensorSpec("logits", "float32", ("batch", 1, vocab))
    present = [TensorSpec(f"present.{n}", "float32", ("batch", heads, "total", head_dim))
               for n in kv]
    cross = [TensorSpec(f"cross.{n}", "float32", ("batch", heads, "src", head_dim)) for n in kv]
    past = [TensorSpec(f"past.{n}", "float32", ("batch", heads, "past", head_dim)) for n in kv]
    source = [TensorSpec("input_ids", "int64", ("batch", "src")),
              TensorSpec("attention_mask", "int64", ("batch", "src"))]
    start = TensorSpec("decoder_input_ids", "int64", ("batch", 1))
    return {"encoder": (source, cross),
            "decoder": ([start, source[1], *past, *cross], [logits, *present])}


def generation_config(model: Any) -> dict[str, Any]:
    """The settings transformers' generate() uses for this model (its generation_config.json
    merged with config.json's), restricted to GENERATION_KEYS."""
    prepared = model._prepare_generation_config(None)
    config = prepared[0] if isinstance(prepared, tuple) else prepared
    data = {k: v for k, v in config.to_dict().items() if k in GENERATION_KEYS and v is not None}
    if data.get("decoder_start_token_id") is None:
        start = getattr(model.config, "decoder_start_token_id", None)
        data["decoder_start_token_id"] = start if start is not None else \
            getattr(model.config, "pad_token_id", 0)
    return data


def source_limit(config: dict[str, Any]) -> int | None:
    if config.get("model_type") in RELATIVE_POSITIONS:
        return None
    value = config.get("max_position_embeddings")
    return int(value) if isinstance(value, int) and value > 0 else None


def task_prefixes(config: dict[str, Any]) -> dict[str, str]:
    """task_specific_params' prefixes (T5: "translate English to German: ", ...)."""
    out = {}
    for name, params in (config.get("task_specific_params") or {}).items():
        if isinstance(params, dict) and isinstance(params.get("prefix"), str):
            out[name] = params["prefix"]
    return out


def prepare_seq2seq(plan: FolderPlan, model: Any) -> PreparedModel:
    from modelport.backends.seq2seq_logits import unsupported

    model.config._attn_implementation = "eager"
    config = plan.folder.config
    layers, heads, head_dim = cache_shape(model)
    specs = graph_specs(layers, heads, head_dim, int(model.config.vocab_size))
    names = {g: ([s.name for s in i], [s.name for s in o]) for g, (i, o) in specs.items()}
    past = [n for n in names["decoder"][0] if n.startswith("past.")]
    cross = [n for n in names["decoder"][0] if n.startswith("cross.")]
    d_model = int(getattr(model.config, "d_model", None) or model.config.hidden_size)
    generation = generation_config(model)
    encoder = Named(EncoderStep(model, int(generation["decoder_start_token_id"])).eval(),
                    names["encoder"][0], [], [])
    decoder = Named(DecoderStep(model, layers, d_model).eval(), names["decoder"][0][:2],
                    past, cross)
    path = plan.folder.path
    limit = source_limit(config)
    prefixes = task_prefixes(config)
    preprocessing = {"task": TASK, "generation_config": "generation_config.json",
                     "max_source_length": limit, "task_prefixes": prefixes,
                     "prefix": next(iter(prefixes.values()), "") if len(prefixes) == 1 else ""}
    assert plan.tokenizer_json is not None
    return PreparedModel(
        name=path.resolve().name, source=f"{path} (Hugging Face folder, {TASK})", task=TASK,
        inputs=specs["encoder"][0], output_names=names["encoder"][1],
        example_inputs=example_feeds(),
        module=Seq2SeqModules(model, encoder, decoder, specs).eval(),
        tokenizer_json=plan.tokenizer_json, max_length=limit or 512,
        metadata={"hf_folder": str(path.resolve()), "hf_task": TASK,
                  "task_detected_from": plan.choice.how,
                  "architectures": plan.folder.architectures,
                  "model_type": plan.folder.model_type,
                  "graphs": "encoder (cross-attention cache), decoder (one step, "
                            "self-attention cache in/out; the first step with an empty past)",
                  "generation_not_applied": unsupported(generation)},
        preprocessing=preprocessing,
        bundle_files={"generation_config.json": json.dumps(generation, indent=1).encode()},
    )


def example_feeds(*, batch: int = 2, src: int = 5) -> dict[str, np.ndarray]:
    ids = (np.arange(batch * src).reshape(batch, src) % 7 + 3).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, -1] = 0
    return {"input_ids": ids, "attention_mask": mask}
