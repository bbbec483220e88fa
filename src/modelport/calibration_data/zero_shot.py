"""Calibration/evaluation data of a zero-shot image classification model (CLIP, SigLIP: an
image tower and a text tower in one graph): a folder of PNG/JPEG images, each paired with one
of modelport's sentences for the text tower (in the label prompt template, tokenized and
padded as `run` does). A folder of .npz feeds (every graph input by name) works as for any
model. Each sample is one image and one text; stacked, n images meet n texts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelport.calibration_data.dataset import CalibrationSet
from modelport.errors import CalibrationDataError
from modelport.specs import TensorSpec

IMAGE_INPUT = "pixel_values"


def load_zero_shot(path: Path, specs: Mapping[str, TensorSpec], pre: Mapping[str, Any],
                   tokenizer_json: Path, max_length: int) -> CalibrationSet | None:
    """Images paired with sentences; None for a folder of .npz feeds (read as for any model)."""
    from modelport.tasks.image import image_files

    if path.is_dir() and any(p.suffix in (".npz", ".npy") for p in path.iterdir()):
        return None
    if not path.is_dir() or not image_files(path):
        raise CalibrationDataError(
            f"'{path}': a zero-shot image classification model calibrates on a folder of "
            "PNG/JPEG images (--calib DIR; its text tower sees modelport's sentences) or of "
            ".npz feeds")
    from modelport.calibration_data.images import from_image_dir
    from modelport.calibration_data.text import TextTokenizer
    from modelport.models.data import sentences

    images = from_image_dir(path, {IMAGE_INPUT: specs[IMAGE_INPUT]}, pre.get("image"))
    zero_shot = pre.get("zero_shot") or {}
    template = str(zero_shot.get("template") or "{}")
    texts = [template.format(s) for s in sentences()]
    text_specs = {k: v for k, v in specs.items() if k != IMAGE_INPUT}
    tokenizer = prompt_tokenizer(TextTokenizer(tokenizer_json, max_length=max_length), zero_shot)
    encoded = tokenizer.encode(texts, text_specs, pad_to=zero_shot.get("pad_to"))
    samples = []
    for index, sample in enumerate(images.samples):
        row = index % len(texts)
        samples.append({**{k: v[row: row + 1] for k, v in encoded.items()}, **sample})
    return CalibrationSet(samples, source=f"{path} (+ modelport's sentences)")


def prompt_tokenizer(tokenizer: Any, zero_shot: Mapping[str, Any]) -> Any:
    """A TextTokenizer that pads with the folder's own pad token (SigLIP's ``</s>``)."""
    if zero_shot.get("pad_id") is not None:
        tokenizer.pad_id = int(zero_shot["pad_id"])
    return tokenizer
