"""Image file -> ``pixel_values`` float32 [1, 3, H, W], with the parameters stored in a bundle.

The same steps as a Hugging Face image processor (resize, center crop, rescale, normalize),
written with numpy and Pillow only, so a device runs an image classifier without torch or
transformers. The parameters come from the checkpoint folder's ``preprocessor_config.json``
(see ``modelport.models.hf.image_config``) and travel in the manifest's ``preprocessing.image``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import MissingDependency, UsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise MissingDependency(
            "reading images needs Pillow: pip install \"modelport[image]\""
        ) from None
    return Image


def load_pixels(path: str | Path, params: Mapping[str, Any]) -> np.ndarray:
    """A PNG/JPEG file, or a .npy (an H x W x 3 image, or pixel_values already prepared)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"image file '{path}' not found")
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
        return pixels_of_array(array, params, where=f"'{path}' holds an array")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"'{path}': give a .png, .jpg or .npy image")
    image_mod = _pil()
    try:
        with image_mod.open(path) as image:
            return preprocess(image, params)
    except OSError as exc:
        raise UsageError(f"cannot read '{path}' as an image: {exc}") from None


def pixels_of_array(array: np.ndarray, params: Mapping[str, Any], *,
                    where: str = "the image is an array") -> np.ndarray:
    """An H x W x 3 (or 4) image array, or pixel_values already prepared ([3, H, W] /
    [N, 3, H, W]) -> pixel_values float32 [N, 3, H, W]."""
    array = np.asarray(array)
    if array.ndim in (3, 4) and array.shape[-3] == 3 and array.shape[-1] != 3:
        return np.ascontiguousarray(array.reshape(-1, *array.shape[-3:]), dtype=np.float32)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        if array.dtype != np.uint8:
            array = np.clip(array, 0, 255).astype(np.uint8)
        return preprocess(_pil().fromarray(array[..., :3]), params)
    raise UsageError(
        f"{where} of shape {list(array.shape)}: give an H x W x 3 image or "
        "pixel_values shaped [3, H, W] / [N, 3, H, W]"
    )


def preprocess(image: Any, params: Mapping[str, Any]) -> np.ndarray:
    """Resize (to H x W, or the shortest edge then center crop), rescale, normalize -> NCHW."""
    image_mod = _pil()
    image = image.convert("RGB")
    resample = image_mod.Resampling(int(params.get("resample", 2)))
    if params.get("letterbox"):  # keep the aspect ratio, pad (YOLO-style detectors)
        from modelport.tasks.letterbox import letterbox

        image = letterbox(image, params)
    elif params.get("shortest_edge"):
        edge = int(params["shortest_edge"])
        w, h = image.size  # the long side truncated, as transformers' resize does
        size = (edge, max(1, int(edge * h / w))) if w <= h else (max(1, int(edge * w / h)), edge)
        image = image.resize(size, resample)
    elif params.get("size"):
        height, width = params["size"]
        image = image.resize((int(width), int(height)), resample)
    if params.get("crop_size"):
        ch, cw = (int(v) for v in params["crop_size"])
        w, h = image.size
        left, top = (w - cw) // 2, (h - ch) // 2  # transformers' center_crop
        image = image.crop((left, top, left + cw, top + ch))
    pixels = np.asarray(image, dtype=np.float32)
    if params.get("rescale_factor") is not None:
        pixels = pixels * np.float32(params["rescale_factor"])
    if params.get("mean") is not None and params.get("std") is not None:
        mean = np.asarray(params["mean"], dtype=np.float32)
        std = np.asarray(params["std"], dtype=np.float32)
        pixels = (pixels - mean) / std
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)


def image_files(folder: Path) -> list[Path]:
    """The PNG/JPEG files of a folder, sorted (so a calibration set's hash is stable)."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
