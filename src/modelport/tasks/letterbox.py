"""Letterbox: resize keeping the aspect ratio, pad to the graph's input with gray (114),
centered, as ultralytics does for YOLO-style detectors; ``letterbox_geometry`` is what
``modelport.tasks.boxes.to_pixels`` undoes. Pillow only, imported when used."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PAD_VALUE = 114  # ultralytics' letterbox gray


def letterbox_geometry(h0: int, w0: int, height: int, width: int) -> tuple[float, int, int,
                                                                         int, int]:
    """(gain, left, top, new_w, new_h) of an h0 x w0 image letterboxed into height x width."""
    gain = min(height / h0, width / w0)
    new_w, new_h = max(1, round(w0 * gain)), max(1, round(h0 * gain))
    left, top = round((width - new_w) / 2 - 0.1), round((height - new_h) / 2 - 0.1)
    return gain, left, top, new_w, new_h


def letterbox(image: Any, params: Mapping[str, Any]) -> Any:
    """A Pillow RGB image resized keeping its aspect ratio and padded to ``params['size']``."""
    from PIL import Image

    height, width = (int(v) for v in params["size"])
    w0, h0 = image.size
    _, left, top, new_w, new_h = letterbox_geometry(h0, w0, height, width)
    resample = Image.Resampling(int(params.get("resample", 2)))
    pad = int(params.get("pad_value", PAD_VALUE))
    canvas = Image.new("RGB", (width, height), (pad, pad, pad))
    canvas.paste(image.resize((new_w, new_h), resample), (left, top))
    return canvas
