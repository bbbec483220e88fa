"""Tiny random-init CLIP and SigLIP folders (both towers: hidden 32, 2 layers, 2 heads, 32 x 32
images in 8 x 8 patches), written with save_pretrained as a user's training script would, each
with its own word-level tokenizer and image processor (CLIP: shortest edge then center crop,
bicubic; SigLIP: a fixed 32 x 32 resize, no attention mask from its tokenizer)."""

from __future__ import annotations

from pathlib import Path

from tests.models.checkpoints import CORPUS, TEXTS, WORDS

LABELS = ["a cat", "a dog", "a red car", "the green house"]
SPECIALS = ["<pad>", "<unk>", "<|startoftext|>", "<|endoftext|>"]
PAD, BOS, EOS = 0, 2, 3


def _tokenizer(input_names: list[str], *, bos: bool, pad: str = "<pad>"):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = " ".join(["this is a photo of", *CORPUS, *TEXTS, *LABELS]).lower().split()
    vocab = {t: i for i, t in enumerate(dict.fromkeys([*SPECIALS, *WORDS, *words, "."]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    single = "<|startoftext|> $A <|endoftext|>" if bos else "$A <|endoftext|>"
    tok.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[("<|startoftext|>", BOS), ("<|endoftext|>", EOS)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token=pad, bos_token="<|startoftext|>",
        eos_token="<|endoftext|>", model_input_names=input_names)
    return fast, len(vocab)


def _towers(vocab: int, positions: int) -> dict:
    common = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 2}
    text = {**common, "vocab_size": vocab, "max_position_embeddings": positions,
            "pad_token_id": PAD, "bos_token_id": BOS, "eos_token_id": EOS}
    return {"text_config": text, "vision_config": {**common, "image_size": 32, "patch_size": 8}}


#: random init maps every image (and every prompt) to nearly one embedding; spread inputs
#: apart as a trained model's are, so top-1 labels win by margins INT8 can keep
SPREAD = {"token_embedding": 1.0, "patch_embedding": 0.3, "position_embedding": 0.3,
          "q_proj": 0.6, "k_proj": 0.6, "v_proj": 0.5}


def _spread(model) -> None:
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            for word, scale in SPREAD.items():
                if word in name and p.ndim >= 2:
                    p.normal_(0, scale)


def clip(path: Path) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tok, vocab = _tokenizer(["input_ids", "attention_mask"], bos=True)
    torch.manual_seed(5)
    model = CLIPModel(CLIPConfig(**_towers(vocab, 48), projection_dim=16)).eval()
    _spread(model)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                       image_mean=[0.5, 0.4, 0.3], image_std=[0.25, 0.3, 0.2]
                       ).save_pretrained(path)
    return path


def siglip(path: Path) -> Path:
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    # SigLIP's own tokenizer pads with </s> and the text tower attends to the padding
    tok, vocab = _tokenizer(["input_ids"], bos=False, pad="<|endoftext|>")
    torch.manual_seed(6)
    model = SiglipModel(SiglipConfig(**_towers(vocab, 64))).eval()
    _spread(model)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path
