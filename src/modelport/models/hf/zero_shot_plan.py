"""The graph I/O and preprocessing of a zero-shot image classification folder (CLIPModel,
SiglipModel), read without loading weights (``modelport inspect`` and export share it through
``describe.plan_folder``).

One graph holds both towers: the tokenizer's inputs (``input_ids`` [texts, seq], and
``attention_mask`` where the tokenizer makes one) and ``pixel_values`` [images, 3, H, W] in;
``logits_per_image`` [images, texts] (the model's own logit scale and bias applied),
``image_embeds`` [images, dim] and ``text_embeds`` [texts, dim] out. The two batch axes are
independent: any number of images against any number of labels.

``preprocessing.zero_shot`` holds what transformers' ZeroShotImageClassificationPipeline does
around the model: the prompt template, the padding of the label prompts (SigLIP: to 64 tokens,
its text tower pools the last position) and how logits become scores (softmax over labels for
CLIP, a sigmoid per label for SigLIP; ``zero_shot_prepare`` checks it against the model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelport.errors import ModelLoadError
from modelport.specs import TensorSpec

if TYPE_CHECKING:
    from pathlib import Path

    from modelport.models.hf.adapter import Adapter
    from modelport.models.hf.folder import Folder

#: transformers' ZeroShotImageClassificationPipeline default prompt
TEMPLATE = "This is a photo of {}."
#: SigLIP label prompts as the pipeline pads them (padding="max_length", max_length=64)
SIGLIP_LENGTH = 64
#: graph text inputs the dual encoders take (a tokenizer's token_type_ids are not fed)
TEXT_INPUTS = ("input_ids", "attention_mask")


def plan_zero_shot(folder: Folder, pre: dict[str, Any], adapter: Adapter | None
                   ) -> tuple[list[TensorSpec], list[TensorSpec], Path, int]:
    """(graph inputs, graph outputs, tokenizer.json, max_length); fills ``pre`` with the image,
    tokenizer length and zero-shot entries."""
    from modelport.models.hf.image_config import image_params
    from modelport.models.hf.tokenizer import text_inputs

    if adapter is not None:
        raise ModelLoadError(f"'{adapter.path}': LoRA adapters are merged for text and image "
                             "classifiers; zero-shot-image-classification takes the merged folder")
    config = folder.config
    text_config = config.get("text_config") or {}
    sigmoid = "siglip" in str(folder.model_type or "")
    text = text_inputs(folder.path, text_config or config)
    length = int(text_config.get("max_position_embeddings") or text.max_length)
    if sigmoid:
        length = min(length, SIGLIP_LENGTH) if length else SIGLIP_LENGTH
    params = image_params(folder)
    pre["image"] = params
    pre["max_length"] = length
    pre["zero_shot"] = {
        "template": TEMPLATE,
        "score": "sigmoid" if sigmoid else "softmax",
        "pad_to": SIGLIP_LENGTH if sigmoid else None,
        "pad_id": pad_token_id(folder.path, text.tokenizer_json),
    }
    dim = int(config.get("projection_dim") or text_config.get("hidden_size") or 0) or "dim"
    inputs = [TensorSpec(name, "int64", ("texts", "seq"))
              for name in text.input_names if name in TEXT_INPUTS]
    inputs.append(TensorSpec("pixel_values", "float32",
                             ("images", 3, params["height"], params["width"])))
    outputs = [TensorSpec("logits_per_image", "float32", ("images", "texts")),
               TensorSpec("image_embeds", "float32", ("images", dim)),
               TensorSpec("text_embeds", "float32", ("texts", dim))]
    return inputs, outputs, text.tokenizer_json, length


def pad_token_id(folder: Path, tokenizer_json: Path) -> int | None:
    """The id of the pad token the folder's tokenizer names (tokenizer_config.json, else
    special_tokens_map.json): SigLIP pads with ``</s>`` and attends to its padding, so the id
    changes the answer; None when the folder names none (the tokenizer file's own then)."""
    import json

    from tokenizers import Tokenizer

    named = None
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            named = json.loads((folder / name).read_text(encoding="utf-8")).get("pad_token")
        except (OSError, ValueError, AttributeError):
            continue
        named = named.get("content") if isinstance(named, dict) else named
        if named:
            break
    if not isinstance(named, str):
        return None
    found = Tokenizer.from_file(str(tokenizer_json)).token_to_id(named)
    return None if found is None else int(found)
