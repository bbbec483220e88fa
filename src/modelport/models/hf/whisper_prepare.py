"""A Whisper folder -> PreparedModel holding its two step modules (the graphs of
models.hf.whisper_plan), the tokenizer and the generation config the numpy session needs.

The step modules call ``WhisperForConditionalGeneration`` itself with an
``EncoderDecoderCache``, as models.hf.seq2seq does for T5/BART: the encoder step takes
``input_features`` and returns the cross-attention cache, the decoder step is
models.hf.seq2seq's ``DecoderStep`` without an attention mask.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from modelport.models.hf.seq2seq import DecoderStep, EncoderStep, Named, _caches, _flat, cache_kwarg
from modelport.models.hf.seq2seq_prepare import Seq2SeqModules, generation_config, graph_specs
from modelport.models.prepared import PreparedModel
from modelport.specs import TensorSpec

if TYPE_CHECKING:
    from modelport.models.hf.describe import FolderPlan

TASK = "automatic-speech-recognition"
#: Whisper's generation-config keys the session reads (backends.whisper_prompt)
WHISPER_KEYS = ("forced_decoder_ids", "lang_to_id", "task_to_id", "is_multilingual",
                "no_timestamps_token_id", "language", "task")


class WhisperEncoderStep(EncoderStep):
    """input_features -> the cross-attention cache: the encoder, then each decoder layer's
    cross-attention key/value projections of its states, shaped as the attention caches them.
    (Calling the whole model on the start token, as the text models' EncoderStep does, would
    tie the decoder's token embedding into the graph through the batch size the attention
    reads from the decoder's states: an 80 MB table for whisper-tiny.)"""

    def forward(self, input_features: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        states = self.model.get_encoder()(input_features=input_features).last_hidden_state
        shape = (states.shape[0], -1)
        cross = []
        for layer in self.model.get_decoder().layers:
            attn = layer.encoder_attn
            for proj in (attn.k_proj, attn.v_proj):
                cross.append(proj(states).view(*shape, attn.num_heads, attn.head_dim)
                             .transpose(1, 2).contiguous())
        return tuple(cross)


class WhisperDecoderStep(DecoderStep):
    """One decoder step with both caches given (no attention mask)."""

    def forward(self, decoder_input_ids: torch.Tensor, past: list[torch.Tensor],  # type: ignore[override]
                cross: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        from transformers.modeling_outputs import BaseModelOutput

        # the cross cache is read, not the encoder's states: zeros of their shape stand in
        states = torch.zeros(cross[0].shape[0], cross[0].shape[2], self.d_model,
                             dtype=cross[0].dtype)
        out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=states),
                         decoder_input_ids=decoder_input_ids, use_cache=True,
                         **{cache_kwarg(self.model): _caches(past, cross)})
        own, _ = _flat(out.past_key_values)
        return (out.logits, *own)


def whisper_specs(layers: int, heads: int, head_dim: int, vocab: int, features: TensorSpec
                  ) -> dict[str, tuple[list[TensorSpec], list[TensorSpec]]]:
    """graph_specs of the text models with ``input_features`` in and no attention mask."""
    specs = graph_specs(layers, heads, head_dim, vocab)
    enc_out = specs["encoder"][1]
    dec_in, dec_out = specs["decoder"]
    return {"encoder": ([features], enc_out),
            "decoder": ([s for s in dec_in if s.name != "attention_mask"], dec_out)}


def whisper_generation(model: Any) -> dict[str, Any]:
    """generation_config.json of the bundle: the common keys (seq2seq_prepare) plus Whisper's
    prompt keys, and the language names the model's language tokens stand for."""
    data = generation_config(model)
    data.pop("forced_bos_token_id", None)
    raw = model.generation_config.to_dict()
    data.update({k: raw[k] for k in WHISPER_KEYS if raw.get(k) is not None})
    if data.get("lang_to_id"):
        try:
            from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE
        except ImportError:  # pragma: no cover - transformers without Whisper's tables
            TO_LANGUAGE_CODE = {}
        data["language_names"] = {name: code for name, code in TO_LANGUAGE_CODE.items()
                                  if f"<|{code}|>" in data["lang_to_id"]}
    return data


def example_feeds(params: dict[str, Any], batch: int = 2) -> dict[str, np.ndarray]:
    from modelport.models.hf.audio_prepare import synthetic_clips
    from modelport.tasks.whisper_features import input_features

    clips = synthetic_clips(int(params["sampling_rate"]), batch, seed=0)
    return {"input_features": input_features(clips, params)}


def cache_shape(model: Any, features: np.ndarray) -> tuple[int, int, int]:
    with torch.no_grad():
        cross = WhisperEncoderStep(model, int(model.config.decoder_start_token_id))(
            torch.from_numpy(features[:1]))
    return len(cross) // 2, int(cross[0].shape[1]), int(cross[0].shape[-1])


def prepare_whisper(plan: FolderPlan, model: Any) -> PreparedModel:
    from modelport.backends.seq2seq_logits import unsupported

    model.config._attn_implementation = "eager"
    params = plan.preprocessing["audio"]
    feeds = example_feeds(params)
    layers, heads, head_dim = cache_shape(model, feeds["input_features"])
    specs = whisper_specs(layers, heads, head_dim, int(model.config.vocab_size), plan.inputs[0])
    names = {g: ([s.name for s in i], [s.name for s in o]) for g, (i, o) in specs.items()}
    past = [n for n in names["decoder"][0] if n.startswith("past.")]
    cross = [n for n in names["decoder"][0] if n.startswith("cross.")]
    generation = whisper_generation(model)
    encoder = Named(WhisperEncoderStep(model, int(generation["decoder_start_token_id"])).eval(),
                    names["encoder"][0], [], [])
    decoder = Named(WhisperDecoderStep(model, layers, int(model.config.d_model)).eval(),
                    ["decoder_input_ids"], past, cross)
    path = plan.folder.path
    assert plan.tokenizer_json is not None
    return PreparedModel(
        name=path.resolve().name, source=f"{path} (Hugging Face folder, {TASK}, Whisper)",
        task=TASK, inputs=specs["encoder"][0], output_names=names["encoder"][1],
        example_inputs=feeds, module=Seq2SeqModules(model, encoder, decoder, specs).eval(),
        tokenizer_json=plan.tokenizer_json, max_length=plan.max_length,
        metadata={"hf_folder": str(path.resolve()), "hf_task": TASK,
                  "task_detected_from": plan.choice.how,
                  "architectures": plan.folder.architectures,
                  "model_type": plan.folder.model_type,
                  "graphs": "encoder (log-mel features -> cross-attention cache), decoder (one "
                            "step, self-attention cache in/out; the prompt tokens one a step)",
                  "generation_not_applied": unsupported(generation)},
        preprocessing=dict(plan.preprocessing),
        bundle_files={"generation_config.json": json.dumps(generation, indent=1).encode()},
    )
