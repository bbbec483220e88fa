"""An image model's preprocessing, read from the folder's ``preprocessor_config.json``.

Turned into the plain parameters ``modelport.tasks.image.preprocess`` applies (numpy + Pillow),
which go into the bundle, so a device resizes and normalizes exactly as the model was trained.
"""

from __future__ import annotations

import logging
from typing import Any

from modelport.errors import ModelLoadError
from modelport.models.hf.folder import Folder, read_json

log = logging.getLogger("modelport")

PREPROCESSOR = "preprocessor_config.json"
BILINEAR = 2  # PIL.Image.Resampling.BILINEAR, transformers' default


def image_params(folder: Folder) -> dict[str, Any]:
    """size [H, W] of the graph input, resize/crop, rescale factor, mean/std, resample."""
    config = folder.config
    raw = read_json(folder.path / PREPROCESSOR) if (folder.path / PREPROCESSOR).is_file() else None
    fallback = config.get("image_size")
    if isinstance(fallback, (list, tuple)):
        fallback = fallback[0]
    if raw is None:
        if not isinstance(fallback, int):
            raise ModelLoadError(
                f"'{folder.path}' has no {PREPROCESSOR} and no image_size in config.json: "
                "save the image processor there (processor.save_pretrained(DIR))"
            )
        log.warning("'%s' has no %s: resizing to %dx%d and normalizing with mean/std 0.5",
                    folder.path, PREPROCESSOR, fallback, fallback)
        raw = {"size": fallback, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    params: dict[str, Any] = {"resample": int(raw.get("resample", BILINEAR))}
    size = raw.get("size")
    crop = raw.get("crop_size") if raw.get("do_center_crop", "crop_size" in raw) else None
    if raw.get("do_resize", True) and size is not None:
        if isinstance(size, int):
            params["size"] = [size, size]
        elif "height" in size and "width" in size:
            params["size"] = [int(size["height"]), int(size["width"])]
        elif "shortest_edge" in size:
            edge = int(size["shortest_edge"])
            crop_pct = raw.get("crop_pct")
            if crop_pct and edge < 384:  # ConvNeXt-style: resize larger, then crop to the edge
                params["shortest_edge"] = int(edge / crop_pct)
                crop = crop or {"height": edge, "width": edge}
            else:
                params["shortest_edge"] = edge
            crop = crop or {"height": edge, "width": edge}
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    if crop:
        params["crop_size"] = [int(crop["height"]), int(crop["width"])]
    if raw.get("do_rescale", True):
        params["rescale_factor"] = float(raw.get("rescale_factor", 1 / 255))
    if raw.get("do_normalize", True) and raw.get("image_mean") is not None:
        params["mean"] = [float(v) for v in _three(raw["image_mean"])]
        params["std"] = [float(v) for v in _three(raw.get("image_std", [1.0] * 3))]
    height, width = params.get("crop_size") or params.get("size") or [fallback, fallback]
    if not isinstance(height, int) or not isinstance(width, int):
        raise ModelLoadError(f"'{folder.path / PREPROCESSOR}': cannot tell the input image size")
    params["height"], params["width"] = height, width
    return params


def _three(values: Any) -> list[float]:
    """Per-channel values; a single value (or a one-item list) applies to all three."""
    if isinstance(values, (int, float)):
        return [float(values)] * 3
    values = list(values)
    return values * 3 if len(values) == 1 else values
