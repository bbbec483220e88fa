"""A tiny random-init Whisper folder built here (no hub): d_model 32, 2+2 layers, 80 mels, a
byte-level BPE tokenizer.json trained on a few words plus Whisper's special tokens (in
Whisper's order), a generation_config.json with lang_to_id / task_to_id / forced_decoder_ids
/ suppress_tokens as the real multilingual (or English-only) checkpoints have them, and a
preprocessor_config.json. Synthetic clips (tones, noise) stand in for speech."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RATE = 16000
WORDS = ("the cat sat on the mat a dog runs quickly over the old road water fire stone book "
         "happy sun and sad moon red blue green tree house river city night day star")
LANGS = ["en", "de", "fr", "es"]


def specials(multilingual: bool) -> list[str]:
    langs = [f"<|{c}|>" for c in LANGS] if multilingual else []
    return ["<|endoftext|>", "<|startoftranscript|>", *langs, "<|translate|>",
            "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>",
            "<|notimestamps|>"]


def write_tokenizer(folder: Path, multilingual: bool) -> dict[str, int]:
    """tokenizer.json (byte-level BPE, 300 tokens, then the specials); special -> id."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([WORDS] * 4, trainer)
    tok.add_special_tokens(specials(multilingual))
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "WhisperTokenizerFast", "bos_token": "<|endoftext|>",
         "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
         "unk_token": "<|endoftext|>"}), encoding="utf-8")
    return {s: tok.token_to_id(s) for s in specials(multilingual)}


def write_checkpoint(folder: Path, *, multilingual: bool = True, seed: int = 0,
                     dims: dict | None = None, wide: bool = True) -> Path:
    """``dims``: WhisperConfig sizes replacing the tiny ones (experiments/whisper_bench.py);
    ``wide``: weights drawn wider than transformers' init (outputs that depend on the input)."""
    import torch
    import transformers as tf

    folder.mkdir(parents=True, exist_ok=True)
    ids = write_tokenizer(folder, multilingual)
    eos, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    vocab = max(ids.values()) + 1
    config = tf.WhisperConfig(
        vocab_size=vocab, num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=64,
        pad_token_id=eos, bos_token_id=eos, eos_token_id=eos, decoder_start_token_id=sot,
        begin_suppress_tokens=[ids["<|endoftext|>"]], suppress_tokens=[])
    for key, value in (dims or {}).items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    model = tf.WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # wider weights: outputs that depend on the input
        for p in model.parameters():
            if wide and p.dim() == 2:
                p.normal_(0.0, 0.5)
    model.save_pretrained(str(folder))
    gen = {"decoder_start_token_id": sot, "eos_token_id": eos, "pad_token_id": eos,
           "bos_token_id": eos, "max_length": config.max_target_positions,
           "begin_suppress_tokens": [eos],
           "suppress_tokens": [ids["<|startoflm|>"], ids["<|startofprev|>"], 7, 11],
           "no_timestamps_token_id": ids["<|notimestamps|>"], "is_multilingual": multilingual}
    if multilingual:
        gen["lang_to_id"] = {f"<|{c}|>": ids[f"<|{c}|>"] for c in LANGS}
        gen["task_to_id"] = {"transcribe": ids["<|transcribe|>"],
                             "translate": ids["<|translate|>"]}
        gen["forced_decoder_ids"] = [[1, None], [2, ids["<|transcribe|>"]]]
    else:
        gen["forced_decoder_ids"] = [[1, ids["<|notimestamps|>"]]]
    (folder / "generation_config.json").write_text(json.dumps(gen, indent=1), encoding="utf-8")
    tf.WhisperFeatureExtractor(feature_size=80).save_pretrained(str(folder))
    return folder


def clips(count: int = 3, *, seed: int = 0, seconds: float = 2.0) -> list[np.ndarray]:
    """Tones, a chirp and noise at 16 kHz: different inputs, different transcripts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(RATE * seconds)) / RATE
    out = []
    for k in range(count):
        kind = k % 3
        if kind == 0:
            wave = 0.5 * np.sin(2 * np.pi * rng.uniform(200, 900) * t)
        elif kind == 1:
            wave = 0.4 * np.sin(2 * np.pi * (150 + 1500 * t / seconds) * t)
        else:
            wave = 0.3 * rng.standard_normal(t.size)
        out.append(wave.astype(np.float32))
    return out


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    import soundfile

    soundfile.write(str(path), samples, rate)
    return path
