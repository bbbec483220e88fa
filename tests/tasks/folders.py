"""Tiny random-init question-answering and fill-mask folders, written with save_pretrained as
a user's fine-tuning script would, each with its own tokenizer (WordPiece, or byte-level BPE
with a <mask> token). Head weights are spread so answers and top-1 tokens are decided by a
margin an INT8 graph can keep (random init gives near-flat logits)."""

from __future__ import annotations

from pathlib import Path

from tests.models.checkpoints import CORPUS, TEXTS, wordpiece_tokenizer


def _bpe_with_mask():
    """A RoBERTa-style byte-level BPE tokenizer with <mask>, trained on the test corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 5 + TEXTS, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
        model_input_names=["input_ids", "attention_mask"])
    return fast, tok.get_vocab_size()


def _spread(model, names: tuple[str, ...], scale: float) -> None:
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(n in name for n in names) and p.ndim == 2:
                p.normal_(0, scale)


def _save(model, tok, path: Path) -> Path:
    model.eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def bert_qa(path: Path) -> Path:
    from transformers import BertConfig, BertForQuestionAnswering

    tok, vocab = wordpiece_tokenizer(["input_ids", "token_type_ids", "attention_mask"])
    config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=48)
    import torch

    torch.manual_seed(1)
    model = BertForQuestionAnswering(config)
    _spread(model, ("qa_outputs",), 2.0)
    return _save(model, tok, path)


def roberta_qa(path: Path) -> Path:
    from transformers import RobertaConfig, RobertaForQuestionAnswering

    tok, vocab = _bpe_with_mask()
    config = RobertaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=50, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2, type_vocab_size=1)
    import torch

    torch.manual_seed(2)
    model = RobertaForQuestionAnswering(config)
    _spread(model, ("qa_outputs",), 2.0)
    return _save(model, tok, path)


def distilbert_mlm(path: Path) -> Path:
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    tok, vocab = wordpiece_tokenizer(["input_ids", "attention_mask"])
    config = DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              max_position_embeddings=64)
    import torch

    torch.manual_seed(3)
    model = DistilBertForMaskedLM(config)
    _spread(model, ("word_embeddings",), 1.0)  # tied to the output layer: logit margins ~2
    return _save(model, tok, path)


def roberta_mlm(path: Path) -> Path:
    from transformers import RobertaConfig, RobertaForMaskedLM

    tok, vocab = _bpe_with_mask()
    config = RobertaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=66, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2, type_vocab_size=1)
    import torch

    torch.manual_seed(4)
    model = RobertaForMaskedLM(config)
    _spread(model, ("word_embeddings",), 1.0)  # tied to the output layer: logit margins ~2
    return _save(model, tok, path)
