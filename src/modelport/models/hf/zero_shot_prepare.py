"""A loaded CLIPModel / SiglipModel -> PreparedModel: one graph holding both towers
(``zero_shot_plan`` names its I/O), the score rule read from the model (a ``logit_bias`` means
SigLIP's sigmoid per label, else CLIP's softmax over labels), export-check inputs made from
synthetic pixels and modelport's sentences, and no built-in calibration data: INT8 needs
``--calib`` with a folder of images (``calibration_data.zero_shot`` pairs them with sentences
for the text tower)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from modelport.models.prepared import PreparedModel

if TYPE_CHECKING:
    from modelport.models.hf.describe import FolderPlan


class DualEncoder(torch.nn.Module):
    """input_ids, attention_mask [texts, seq] + pixel_values [images, 3, H, W] ->
    logits_per_image [images, texts], image_embeds, text_embeds (as transformers gives them:
    unit-norm embeddings, logits with the model's scale and bias)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def run(self, **feeds: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**feeds, return_dict=True)
        return out.logits_per_image, out.image_embeds, out.text_embeds

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.run(input_ids=input_ids, attention_mask=attention_mask,
                        pixel_values=pixel_values)


class DualEncoderIdsOnly(DualEncoder):
    """The same, for a tokenizer that makes no attention mask (SigLIP's)."""

    def forward(self, input_ids: torch.Tensor,  # type: ignore[override]
                pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.run(input_ids=input_ids, pixel_values=pixel_values)


def wrap_dual(model: Any, plan: FolderPlan) -> torch.nn.Module:
    names = {s.name for s in plan.inputs}
    return (DualEncoder if "attention_mask" in names else DualEncoderIdsOnly)(model).eval()


def score_rule(model: Any) -> dict[str, Any]:
    """How logits_per_image become label scores, read from the model: SigLIP's learned bias
    goes with a sigmoid per label, CLIP's scale alone with a softmax over the labels."""
    with torch.no_grad():
        scale = float(model.logit_scale.exp())
        bias = getattr(model, "logit_bias", None)
        rule = {"logit_scale": scale, "score": "softmax"}
        if bias is not None:
            rule.update(score="sigmoid", logit_bias=float(bias.reshape(-1)[0]))
    return rule


def zero_shot_model(plan: FolderPlan, common: dict[str, Any], model: Any,
                    synthetic_pixels: Callable[..., dict[str, np.ndarray]]) -> PreparedModel:
    from modelport.calibration_data.text import TextTokenizer
    from modelport.models.data import sentences

    assert plan.tokenizer_json is not None
    pre = common["preprocessing"]
    pre["zero_shot"] = {**pre["zero_shot"], **score_rule(model)}
    from modelport.calibration_data.zero_shot import prompt_tokenizer

    tokenizer = prompt_tokenizer(TextTokenizer(plan.tokenizer_json, max_length=plan.max_length),
                                 pre["zero_shot"])
    text_specs = {s.name: s for s in plan.inputs if s.name != "pixel_values"}
    pixels_plan = _PixelsOnly(plan)
    texts = [pre["zero_shot"]["template"].format(s) for s in sentences()]
    pad_to = pre["zero_shot"].get("pad_to")

    def make_inputs(batch: int) -> dict[str, np.ndarray]:
        start = (batch * 37) % max(1, len(texts) - batch)
        feeds = tokenizer.encode(texts[start: start + batch], text_specs, pad_to=pad_to)
        feeds.update(synthetic_pixels(pixels_plan, batch, seed=batch))
        return feeds

    return PreparedModel(example_inputs=make_inputs(2), tokenizer_json=plan.tokenizer_json,
                         max_length=plan.max_length, make_inputs=make_inputs, **common)


class _PixelsOnly:
    """The plan seen by ``prepare.synthetic_pixels``: pixel_values as its first input."""

    def __init__(self, plan: FolderPlan) -> None:
        self.inputs = [s for s in plan.inputs if s.name == "pixel_values"]
