"""Images for the dense vision tasks (object detection, semantic segmentation): the pixels the
graph takes, and the original size the answer is given in (numpy and Pillow only).

Both tasks resize the whole image to the graph's fixed input (``preprocessing.image.size``),
never crop it (boxes and masks must cover the whole picture); a YOLO-style factory may ask for
a ``letterbox`` instead: resize keeping the aspect ratio, pad to the input with gray (114),
centered, as ultralytics does (``modelport.tasks.letterbox``); ``to_pixels`` undoes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import UsageError


def open_rgb(item: Any) -> tuple[Any, str]:
    """A path (PNG/JPEG/.npy H x W x 3) or an H x W x 3 array -> (Pillow RGB image, its name);
    one-line UsageError for anything that is not an image."""
    from modelport.tasks.image import IMAGE_SUFFIXES, _pil

    image_mod = _pil()
    if isinstance(item, np.ndarray):
        return _from_array(item, "the image array"), "image"
    path = Path(item)
    if not path.is_file():
        raise UsageError(f"image file '{path}' not found")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read '{path}' as a .npy image: {exc}") from None
        return _from_array(array, f"'{path}'"), str(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"'{path}': give a .png, .jpg or .npy image")
    try:
        with image_mod.open(path) as image:
            return image.convert("RGB"), str(path)
    except OSError as exc:
        raise UsageError(f"cannot read '{path}' as an image: {exc}") from None


def _from_array(array: np.ndarray, where: str) -> Any:
    from modelport.tasks.image import _pil

    array = np.asarray(array)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise UsageError(f"{where} has shape {list(array.shape)}: a detection or segmentation "
                         "bundle takes an H x W x 3 image (its answer is in that image's pixels)")
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return _pil().fromarray(np.ascontiguousarray(array[..., :3])).convert("RGB")


def image_batch(bundle: Any, images: Sequence[Any]) -> tuple[dict[str, np.ndarray],
                                                             list[tuple[int, int]], list[str]]:
    """Images -> (the graph's feeds, each original (height, width), each image's name)."""
    from modelport.shapes import fit_arrays
    from modelport.tasks.image import preprocess

    params = (bundle.manifest.get("preprocessing") or {}).get("image")
    if not params:
        raise UsageError(f"{bundle.path} has no image preprocessing in its manifest: use --input")
    rows, sizes, names = [], [], []
    for item in images:
        image, name = open_rgb(item)
        sizes.append((image.size[1], image.size[0]))
        names.append(name)
        rows.append(preprocess(image, params))
    feeds = fit_arrays({bundle.inputs[0].name: np.concatenate(rows)}, bundle.inputs)
    return feeds, sizes, names
