"""image-segmentation (semantic): an image -> each class's share of its pixels, and with
``--save-mask mask.png`` the class mask of the original image as a palette PNG (pixel value =
class id). ``modelport.tasks.masks`` resizes the logits and takes the argmax. Fidelity: mean
IoU of the argmax masks against the torch reference's."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import UsageError
from modelport.tasks.base import Answer, RunInputs, Task, preprocessing
from modelport.tasks.masks import Share, class_mask, class_shares, segmentation_metric


@dataclass
class Segmentation(Answer):
    task: str
    inputs: list[str]
    sizes: list[tuple[int, int]]
    shares: list[list[Share]]
    mask_path: Path | None = None
    outputs: dict[str, np.ndarray] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = []
        for source, (h, w), shares in zip(self.inputs, self.sizes, self.shares, strict=True):
            out.append(f"{source} ({w}x{h}): {len(shares)} class(es)")
            width = max((len(s.label) for s in shares), default=0)
            out.extend(f"  {s.label:<{width}}  {100 * s.share:6.2f}%" for s in shares)
        if self.mask_path is not None:
            out.append(f"mask written to {self.mask_path} (pixel value = class id)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task,
                "predictions": [{"input": s, "height": h, "width": w,
                                 "classes": [vars(x) for x in shares]}
                                for s, (h, w), shares in zip(self.inputs, self.sizes,
                                                             self.shares, strict=True)],
                "mask": str(self.mask_path) if self.mask_path else None,
                "outputs": {k: np.asarray(v).tolist() for k, v in self.outputs.items()}}


class ImageSegmentation(Task):
    name = "image-segmentation"
    fidelity = "image-segmentation"
    inputs = ("image",)
    options = ("save_mask",)
    metric_name = "mean_iou"
    metric = staticmethod(segmentation_metric)

    def check_more(self, bundle: Any, given: RunInputs) -> None:
        if given.save_mask is not None and len(given.image or []) > 1:
            raise UsageError("--save-mask writes the mask of one image: give one --image")
        if given.save_mask is not None and given.save_mask.suffix.lower() != ".png":
            raise UsageError(f"--save-mask '{given.save_mask}': the mask is written as a .png")

    def encode(self, bundle: Any, given: RunInputs) -> tuple[dict[str, np.ndarray], Any]:
        from modelport.tasks.vision_input import image_batch

        feeds, sizes, names = image_batch(bundle, given.image or [])
        return feeds, (sizes, names)

    def decode(self, bundle: Any, outputs: dict[str, np.ndarray], given: RunInputs,
               state: Any) -> Answer:
        from modelport.tasks.masks import write_mask_png

        sizes, names = state
        pre = preprocessing(bundle)
        name = (pre.get("segmentation") or {}).get("output", "logits")
        logits = np.asarray(outputs[name] if name in outputs else next(iter(outputs.values())))
        id2label = pre.get("id2label")
        masks = [class_mask(row, hw) for row, hw in zip(logits[: len(sizes)], sizes,
                                                         strict=True)]
        path = None
        if given.save_mask is not None:
            path = write_mask_png(masks[0], given.save_mask, int(logits.shape[1]))
        return Segmentation(self.name, names, sizes, [class_shares(m, id2label) for m in masks],
                            path, outputs)
