"""builtin:tiny-lm — a small Llama-style decoder trained in about a minute on the calibration
split of the shipped CC0 sentences, so LM tests and examples have a perplexity that means
something.

Its own BPE tokenizer (``tokenizers``, SentencePiece-style metaspace, no BOS, ``</s>`` appended as
eos), hidden 128 (a multiple of the INT4 group size 32), grouped-query attention (4 heads, 2 KV
heads). Seeded, trained single-threaded and cached as a checkpoint folder, which is then loaded
through the same path as a user's folder (models.hf).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelport.models.digits_cnn import cache_dir
from modelport.models.prepared import PreparedModel

log = logging.getLogger("modelport")

SEED = 0
VERSION = "v1"  # bump when the architecture, tokenizer or training changes
VOCAB = 512
STEPS = 300
EOS = "</s>"
ARCH = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128}


def make_bpe_tokenizer(texts: Sequence[str], vocab_size: int = VOCAB) -> Any:
    """A BPE tokenizer over ``texts`` with <pad>=0, <unk>=1, </s>=2 appended to every line."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()  # SentencePiece-style: "▁" marks a space
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<unk>", EOS],
                                  show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}",
                                                       special_tokens=[(EOS, 2)])
    return tok


def save_tokenizer(tok: Any, folder: Path, *, context: int) -> None:
    """tokenizer.json plus the config files transformers' AutoTokenizer reads."""
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS, "pad_token": "<pad>",
        "unk_token": "<unk>", "model_max_length": context,
        "model_input_names": ["input_ids", "attention_mask"]}, indent=1))


def folder() -> Path:
    """The cached checkpoint folder, trained on first use."""
    path = cache_dir() / f"tiny-lm-{VERSION}-seed{SEED}-s{STEPS}"
    if (path / "model.safetensors").is_file():
        return path
    # a folder of this process's own, renamed into place: two processes training at once (test
    # workers, parallel exports) shared one ".tmp" and deleted the finished folder the other
    # was reading ("has no tokenizer"); the first to finish wins, the other's copy is dropped
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".tmp-", dir=path.parent))
    try:
        train(tmp)
        if path.exists() and not (path / "model.safetensors").is_file():
            shutil.rmtree(path, ignore_errors=True)  # a stale, incomplete folder in the way
        try:
            tmp.rename(path)
        except OSError:  # another process renamed its folder into place first
            if not (path / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def train(out: Path) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from modelport.calibration_data.lm_text import lm_default_data

    log.info("training builtin:tiny-lm once (about a minute; cached in %s)", out.parent)
    from modelport.models.data import sentences

    tok = make_bpe_tokenizer(sentences())
    save_tokenizer(tok, out, context=ARCH["max_position_embeddings"])
    calib, _ = lm_default_data(out / "tokenizer.json")  # the same split the export will use
    seqs = [torch.from_numpy(s["input_ids"][0]) for s in calib]
    torch.manual_seed(SEED)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), pad_token_id=0, eos_token_id=2,
                         bos_token_id=None, tie_word_embeddings=False, **ARCH)
    model = LlamaForCausalLM(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic weights (see digits_cnn)
    try:
        fit(model, seqs)
    finally:
        torch.set_num_threads(threads)
    model.eval().save_pretrained(str(out), safe_serialization=True)
    GenerationConfig(eos_token_id=2, pad_token_id=0).save_pretrained(str(out))


def fit(model: Any, seqs: list[Any], *, batch: int = 16) -> None:
    import torch

    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=STEPS)
    model.train()
    for _step in range(STEPS):
        rows = [seqs[i] for i in torch.randint(len(seqs), (batch,), generator=generator)]
        ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=0)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(r) for r in rows],
                                               batch_first=True, padding_value=0)
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()


def load() -> PreparedModel:
    from modelport.models.hf import load_folder

    prepared = load_folder(folder(), task="text-generation")
    prepared.name = "tiny-lm"
    prepared.source = "builtin:tiny-lm (trained on the calibration split of the sentences)"
    return prepared
