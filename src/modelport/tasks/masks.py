"""Semantic segmentation logits -> a class mask of the original image (numpy and Pillow only).

The logits [classes, h, w] are resized to the original image with bilinear interpolation
(half-pixel centers, as torch's ``interpolate(mode="bilinear", align_corners=False)`` that
transformers' ``post_process_semantic_segmentation`` uses) and the argmax over classes is the
mask. The resize is separable (two small matrices) and runs in row bands, so a large image
never holds all classes at full size at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.tasks.base import as_points
from modelport.tasks.postprocess import label_name

BAND_ROWS = 128


def bilinear_matrix(src: int, dst: int) -> np.ndarray:
    """[dst, src] weights of a 1-D bilinear resize with half-pixel centers (align_corners
    False; source positions below 0 clamp to 0, as torch does)."""
    pos = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    pos = np.clip(pos, 0.0, None)
    i0 = np.minimum(np.floor(pos).astype(np.int64), src - 1)
    i1 = np.minimum(i0 + 1, src - 1)
    frac = pos - i0
    weights = np.zeros((dst, src), dtype=np.float64)
    rows = np.arange(dst)
    np.add.at(weights, (rows, i0), 1.0 - frac)
    np.add.at(weights, (rows, i1), frac)
    return weights


def class_mask(logits: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """argmax over classes of ``logits`` [classes, h, w], resized to ``size`` (H, W) first."""
    x = np.asarray(logits, dtype=np.float32)
    if size is None or tuple(size) == x.shape[1:]:
        return x.argmax(0).astype(np.int32)
    height, width = (int(v) for v in size)
    ry = bilinear_matrix(x.shape[1], height).astype(np.float32)
    rx = bilinear_matrix(x.shape[2], width).astype(np.float32)
    cols = np.einsum("chw,Ww->chW", x, rx)  # [classes, h, W]
    mask = np.empty((height, width), dtype=np.int32)
    for top in range(0, height, BAND_ROWS):
        band = np.einsum("Hh,chW->cHW", ry[top : top + BAND_ROWS], cols)
        mask[top : top + BAND_ROWS] = band.argmax(0)
    return mask


@dataclass(frozen=True)
class Share:
    label: str
    label_id: int
    share: float  # fraction of the image's pixels


def class_shares(mask: np.ndarray, id2label: Mapping[str, str] | None) -> list[Share]:
    """Each class present in the mask with its share of the pixels, largest first."""
    ids, counts = np.unique(np.asarray(mask), return_counts=True)
    total = float(np.asarray(mask).size)
    order = np.argsort(-counts, kind="stable")
    return [Share(label_name(id2label, int(ids[i])), int(ids[i]), float(counts[i] / total))
            for i in order]


def palette(classes: int) -> np.ndarray:
    """A fixed, distinct color per class (uint8 [classes, 3]); class 0 is black."""
    rng = np.random.default_rng(12345)
    colors = rng.integers(40, 256, (max(classes, 1), 3)).astype(np.uint8)
    colors[0] = 0
    return colors


def write_mask_png(mask: np.ndarray, path: Path, classes: int) -> Path:
    """A palette PNG: each pixel's value is its class id (read it back with
    ``np.asarray(Image.open(path))``), shown in a distinct color per class."""
    import os
    import tempfile

    from modelport.errors import UsageError
    from modelport.io import output_error
    from modelport.tasks.image import _pil

    image_mod = _pil()
    mask = np.asarray(mask)
    if classes <= 256:
        image = image_mod.fromarray(mask.astype(np.uint8))  # "L"; putpalette makes it "P"
        image.putpalette(palette(classes).reshape(-1).tolist())
    else:  # more classes than a palette holds: a 16-bit grayscale of the ids
        image = image_mod.fromarray(mask.astype(np.uint16))
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"--save-mask '{path}': the folder '{path.parent}' does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    except OSError as exc:
        raise output_error(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def mean_iou(got: np.ndarray, ref: np.ndarray) -> float:
    """Mean over images of the mean IoU over the classes present in either mask (1.0 when the
    masks are equal)."""
    per_image = []
    for g, r in zip(np.asarray(got), np.asarray(ref), strict=True):
        ious = []
        for c in np.union1d(np.unique(g), np.unique(r)):
            inter = np.count_nonzero((g == c) & (r == c))
            union = np.count_nonzero((g == c) | (r == c))
            ious.append(inter / union)
        per_image.append(float(np.mean(ious)) if ious else 1.0)
    return float(np.mean(per_image)) if per_image else 1.0


def segmentation_metric(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                        feeds: Any, pre: Mapping[str, Any]) -> dict[str, float]:
    """Mean IoU of the candidate's argmax masks vs the reference's (at the graph's output
    resolution), as accuracy points."""
    name = (pre.get("segmentation") or {}).get("output", "logits")
    name = name if name in reference else next(iter(reference))
    got = np.asarray(outputs[name]).argmax(1)
    ref = np.asarray(reference[name]).argmax(1)
    miou = mean_iou(got, ref)
    return as_points(miou, mean_iou=miou, pixel_agreement=float((got == ref).mean()))
