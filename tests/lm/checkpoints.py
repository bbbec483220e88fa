"""Tiny random-init causal-LM checkpoint folders, written with save_pretrained as a user's
script would, each with a BPE tokenizer made with `tokenizers` (the one tiny-lm uses).

The initializer range is wide (0.5-1.0) so the top two logits are far apart: greedy decoding
then picks the same token in every runtime, and token-for-token equality is a fair test.
"""

from __future__ import annotations

from pathlib import Path

ARCHS = ("gpt2", "qwen2", "falcon")
#: rotary variants (tests/lm/test_lm_rotary.py): Llama 3 rope scaling with grouped K/V, YaRN's
#: attention factor with one KV head per query head, StableLM's partial rotary (a half of a
#: 32-wide head), Phi's partial rotary with q/k/v biases, and StableLM at a 16-wide head whose
#: 8-wide rotary ORT's kernel does not take
ROPE_ARCHS = ("llama3", "yarn", "stablelm", "phi", "stablelm-rot8")


def write_checkpoint(kind: str, folder: Path, *, eos: int | list[int] = 2) -> Path:
    import torch
    from transformers import (
        FalconConfig,
        FalconForCausalLM,
        GenerationConfig,
        GPT2Config,
        GPT2LMHeadModel,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    from modelport.models.data import sentences
    from modelport.models.tiny_lm import make_bpe_tokenizer, save_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tok = make_bpe_tokenizer(sentences()[:200], vocab_size=256)
    save_tokenizer(tok, folder, context=64)
    vocab = tok.get_vocab_size()
    torch.manual_seed(0)
    if kind == "gpt2":
        config = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                            initializer_range=0.5, eos_token_id=2, bos_token_id=None)
        model = GPT2LMHeadModel(config)
    elif kind == "falcon":  # falcon-7b's layout: multi-query (1 KV head), parallel attn + MLP
        config = FalconConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2,
                              num_attention_heads=4, multi_query=True,
                              new_decoder_architecture=False, parallel_attn=True, alibi=False,
                              bias=False, max_position_embeddings=64, initializer_range=1.0,
                              eos_token_id=2, bos_token_id=None)
        model = FalconForCausalLM(config)
    elif kind in ROPE_ARCHS:
        model = _rope_model(kind, vocab)
    else:  # grouped-query attention: 2 KV heads for 4 query heads
        config = Qwen2Config(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=64, initializer_range=1.0,
                             eos_token_id=2, bos_token_id=None, tie_word_embeddings=False)
        model = Qwen2ForCausalLM(config)
    model.eval().save_pretrained(str(folder), safe_serialization=True)
    GenerationConfig(eos_token_id=eos, pad_token_id=0).save_pretrained(str(folder))
    return folder


def _rope_model(kind: str, vocab: int):
    import transformers

    common = {"vocab_size": vocab, "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 64, "initializer_range": 1.0, "eos_token_id": 2,
              "bos_token_id": None, "tie_word_embeddings": False}
    if kind == "llama3":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**common, rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 16}))
    if kind == "yarn":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(
            **{**common, "num_key_value_heads": 4},
            rope_scaling={"rope_type": "yarn", "factor": 4.0,
                          "original_max_position_embeddings": 16}))
    if kind == "phi":
        return transformers.PhiForCausalLM(transformers.PhiConfig(
            **{**common, "hidden_size": 128}, partial_rotary_factor=0.5))
    wide = {**common, "hidden_size": 128} if kind == "stablelm" else common
    return transformers.StableLmForCausalLM(transformers.StableLmConfig(
        **wide, partial_rotary_factor=0.5))
