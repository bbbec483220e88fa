"""Tiny random-init encoder-decoder folders (T5, BART, Marian, Pegasus) with a word-level
tokenizer.json built here (no hub): hidden 32, 1-2 layers, a 64-token vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "house", "red", "blue", "green", "big", "small", "runs", "jumps", "quickly", "slowly", "over", "under", "tree", "car", "road", "city", "river", "old", "new", "happy", "sad", "day", "night", "sun", "moon", "star", "book", "table", "chair", "window", "door", "water", "fire", "stone"]

#: family -> (special tokens in id order, pad, eos, decoder start, prepend bos)
SPECIALS = {
    "t5": (["<pad>", "</s>", "<unk>"], 0, 1, 0, False),
    "bart": (["<s>", "<pad>", "</s>", "<unk>"], 1, 2, 2, True),
    "marian": (["</s>", "<unk>", "<pad>"], 2, 0, 2, False),
    "pegasus": (["<pad>", "</s>", "<unk>"], 0, 1, 0, False),
}
VOCAB = 64


def write_tokenizer(folder: Path, family: str) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    specials, pad, eos, _, bos = SPECIALS[family]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    unk = "<unk>"
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    from tokenizers import decoders

    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    eos_tok = specials[eos]
    single = (f"<s> $A {eos_tok}" if bos else f"$A {eos_tok}")
    pairs = [(eos_tok, eos)] + ([("<s>", 0)] if bos else [])
    tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=pairs)
    tok.add_special_tokens(specials)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": specials[pad],
         "eos_token": eos_tok, "unk_token": unk,
         "model_max_length": 64}), encoding="utf-8")


def config_of(family: str):
    import transformers as tf

    _, pad, eos, start, _ = SPECIALS[family]
    common = {"vocab_size": VOCAB, "pad_token_id": pad, "eos_token_id": eos,
              "decoder_start_token_id": start}
    if family == "t5":
        return tf.T5Config(d_model=32, d_ff=64, d_kv=16, num_heads=2, num_layers=2,
                           num_decoder_layers=1, relative_attention_num_buckets=8,
                           **common)
    size = {"d_model": 32, "encoder_layers": 1, "decoder_layers": 2, "encoder_attention_heads": 2,
            "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
            "max_position_embeddings": 48, **common}
    if family == "bart":
        return tf.BartConfig(bos_token_id=0, forced_eos_token_id=eos, **size)
    if family == "marian":
        return tf.MarianConfig(**size)
    return tf.PegasusConfig(**size)


CLASSES = {"t5": "T5ForConditionalGeneration", "bart": "BartForConditionalGeneration",
           "marian": "MarianMTModel", "pegasus": "PegasusForConditionalGeneration"}


def write_checkpoint(family: str, folder: Path, *, seed: int = 0,
                     task_prefix: str | None = None) -> Path:
    import torch
    import transformers as tf

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = config_of(family)
    if task_prefix is not None:
        config.task_specific_params = {"translation_en_to_de": {"prefix": task_prefix}}
    model = getattr(tf, CLASSES[family])(config).eval()
    with torch.no_grad():  # transformers' small init makes every input decode alike; wider
        for p in model.parameters():  # weights make the output depend on the input, with
            if p.dim() == 2:  # clear (not rounding-decided) greedy choices
                p.normal_(0.0, 0.6)
    model.save_pretrained(str(folder))
    write_tokenizer(folder, family)
    return folder


def encode(folder: Path, texts: list[str]):
    """(input_ids, attention_mask) right-padded, as transformers' tokenizers give them."""
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    pad = json.loads((folder / "config.json").read_text())["pad_token_id"]
    rows = [tok.encode(t).ids for t in texts]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad, np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, 1
    return ids, mask
