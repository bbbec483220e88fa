"""Tiny random-init Hugging Face checkpoint folders, written with save_pretrained as a user's
fine-tuning script would, each with its own tokenizer (WordPiece or byte-level BPE built with
`tokenizers`, wrapped in PreTrainedTokenizerFast) or image processor."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "runs", "fast", "slow", "red", "blue",
         "green", "house", "tree", "car", "is", "was", "and", "john", "lives", "in", "paris",
         "works", "at", "acme", "she", "bought", "new", "phone", "berlin", "yesterday"]
CORPUS = [
    "the cat sat on the mat", "john lives in paris", "she bought a new phone yesterday",
    "a red car runs fast", "the dog was slow and the house is green", "acme works in berlin",
]
TEXTS = ["John lives in Paris and works at Acme.", "the red car runs fast",
         "She bought a new phone yesterday in Berlin", "a cat"]


def wordpiece_tokenizer(input_names: list[str]):
    """A BERT-style tokenizer: lowercase, WordPiece over the test words, [CLS] ... [SEP]."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokens += [c for c in "abcdefghijklmnopqrstuvwxyz.,'" if c not in tokens]
    tokens += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_input_names=input_names,
    ), len(vocab)


def bpe_tokenizer():
    """A RoBERTa-style byte-level BPE tokenizer trained on the test corpus: <s> ... </s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 5 + TEXTS, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", model_input_names=["input_ids", "attention_mask"])
    return fast, tok.get_vocab_size()


def _seeded():
    import torch

    torch.manual_seed(0)


def _spread(model, scale: float = 0.5) -> None:
    """Random init gives near-uniform logits; larger head weights make labels differ."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "classifier" in name and p.ndim == 2:
                p.normal_(0, scale)


def bert_multilabel_classifier(path: Path) -> Path:
    """BertForSequenceClassification, 4 labels, multi-label (sigmoid scores)."""
    from transformers import BertConfig, BertForSequenceClassification

    tok, vocab = wordpiece_tokenizer(["input_ids", "token_type_ids", "attention_mask"])
    labels = ["sports", "tech", "travel", "food"]
    config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        id2label=dict(enumerate(labels)),
                        label2id={n: i for i, n in enumerate(labels)},
                        problem_type="multi_label_classification")
    _seeded()
    model = BertForSequenceClassification(config).eval()
    _spread(model)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def distilbert_token_classifier(path: Path) -> Path:
    """DistilBertForTokenClassification with BIO person/location labels."""
    from transformers import DistilBertConfig, DistilBertForTokenClassification

    tok, vocab = wordpiece_tokenizer(["input_ids", "attention_mask"])
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    config = DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              max_position_embeddings=64, id2label=dict(enumerate(labels)),
                              label2id={n: i for i, n in enumerate(labels)})
    _seeded()
    model = DistilBertForTokenClassification(config).eval()
    _spread(model, 1.0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def roberta_encoder(path: Path) -> Path:
    """RobertaModel (feature-extraction: last_hidden_state), byte-level BPE tokenizer."""
    from transformers import RobertaConfig, RobertaModel

    tok, vocab = bpe_tokenizer()
    config = RobertaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=66, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2, type_vocab_size=1)
    _seeded()
    RobertaModel(config, add_pooling_layer=False).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def electra_cls_sentence_embedder(path: Path) -> Path:
    """An ElectraModel saved as a sentence-transformers folder with CLS + max pooling, no
    Normalize (a pipeline other than MiniLM's mean + normalize)."""
    from transformers import ElectraConfig, ElectraModel

    tok, vocab = wordpiece_tokenizer(["input_ids", "token_type_ids", "attention_mask"])
    config = ElectraConfig(vocab_size=vocab, embedding_size=16, hidden_size=32,
                           num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=64)
    _seeded()
    ElectraModel(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True,
         "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True,
         "pooling_mode_mean_sqrt_len_tokens": False}))
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"}]))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 48}))
    return path


def vit_image_classifier(path: Path) -> Path:
    """ViTForImageClassification on 32x32 images, with a ViTImageProcessor config."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    labels = ["cat", "dog", "bird"]
    config = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32,
                       num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       id2label=dict(enumerate(labels)),
                       label2id={n: i for i, n in enumerate(labels)})
    _seeded()
    model = ViTForImageClassification(config).eval()
    _spread(model)
    model.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5, 0.4, 0.3],
                      image_std=[0.2, 0.25, 0.3]).save_pretrained(path)
    return path


def write_images(folder: Path, n: int, *, size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """Random RGB PNGs of a size other than the model's, so resizing is exercised."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = rng.integers(0, 255, (1, 1, 3))
        noise = rng.integers(-60, 60, (size[0], size[1], 3))
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder
